package e2e

// The Vitrage integration: python/tests run the Python datasources in
// python/vitrage_synchronizer against the real Vitrage (Debian's
// python3-vitrage, installed by scripts/deps.d/vitrage.sh), the real
// synchronizer binary and the fake cloud of openstack/openstacktest.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// vitragePython is Debian's interpreter, the one python3-vitrage installs
// into (a python3 earlier on PATH may be another one).
const vitragePython = "/usr/bin/python3"

func TestVitrage(t *testing.T) {
	if out, err := exec.Command(vitragePython, "-c", "import vitrage.entity_graph.driver_exec").CombinedOutput(); err != nil {
		t.Fatalf("Vitrage is not importable by %s (%v): install it with scripts/deps.d/vitrage.sh "+
			"(apt-get install python3-vitrage)\n%s", vitragePython, err, out)
	}
	dir := t.TempDir()
	fakecloud := filepath.Join(dir, "fakecloud")
	if out, err := exec.Command("go", "build", "-o", fakecloud, "./openstack/openstacktest/cmd/fakecloud").CombinedOutput(); err != nil {
		t.Fatalf("build fakecloud: %v\n%s", err, out)
	}
	pydir := pythonDir(t)
	// Separate processes: Vitrage's config is process-wide, and the
	// integration test parses a vitrage.conf.
	for _, module := range []string{"test_driver", "test_vitrage", "test_stream"} {
		t.Run(module, func(t *testing.T) { runPythonTest(t, pydir, module, fakecloud) })
	}
}

// runPythonTest runs one unittest module of python/tests with Vitrage's
// interpreter.
func runPythonTest(t *testing.T, pydir, module, fakecloud string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vitragePython, "-m", "unittest", "-v", module)
	cmd.Dir = filepath.Join(pydir, "tests")
	cmd.Env = append(os.Environ(),
		"PYTHONPATH="+pydir,
		"PYTHONDONTWRITEBYTECODE=1",
		"PYTHONWARNINGS=ignore",
		"SYNC_BINARY="+binary,
		"FAKECLOUD_BINARY="+fakecloud,
	)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("%s (%.1f s):\n%s", module, time.Since(start).Seconds(), out)
	if err != nil {
		t.Fatalf("python/tests/%s.py failed: %v", module, err)
	}
}
