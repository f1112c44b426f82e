package e2e

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPythonPipInstall: `pip install ./python` works offline, with Debian's
// setuptools (no build isolation, no index), into a virtualenv that sees
// Debian's Vitrage, and the datasources import from there.
func TestPythonPipInstall(t *testing.T) {
	dir := t.TempDir()
	// setuptools writes build/ and *.egg-info beside the sources: build a
	// copy, not the checkout.
	src := filepath.Join(dir, "python")
	if out, err := exec.Command("cp", "-r", "python", src).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	venv := filepath.Join(dir, "venv")
	// Debian's pip drives the virtualenv (--python): a venv of its own
	// would first install pip and setuptools into it.
	if out, err := exec.Command("/usr/bin/python3", "-m", "venv", "--without-pip", "--system-site-packages", venv).CombinedOutput(); err != nil {
		t.Fatalf("venv: %v\n%s", err, out)
	}
	py := filepath.Join(venv, "bin", "python")
	pip := exec.Command("/usr/bin/python3", "-m", "pip", "--python", py, "install", "--no-index", "--no-build-isolation", "--no-cache-dir", src)
	pip.Dir = dir
	if out, err := pip.CombinedOutput(); err != nil || !strings.Contains(string(out), "Successfully installed vitrage-synchronizer-") {
		t.Fatalf("pip install --no-index ./python: %v\n%s", err, out)
	}
	imp := exec.Command(py, "-I", "-c", "import vitrage_synchronizer.datasources.nova.instance.driver as d; print(d.__file__)")
	imp.Dir = "/"
	out, err := imp.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), venv+"/lib/python3") {
		t.Errorf("import from the virtualenv: %v\n%s", err, out)
	}
}

// livePythonEnv says where Vitrage's processes find vitrage_synchronizer:
// the installed python3-vitrage-synchronizer when it is installed and
// holds this checkout's code (so that the live test proves the package),
// else the checkout's python/ on PYTHONPATH.
func livePythonEnv(t *testing.T, pydir string) []string {
	t.Helper()
	installed := "/usr/lib/python3/dist-packages/vitrage_synchronizer"
	if _, err := os.Stat(installed); err != nil {
		return []string{"PYTHONPATH=" + pydir}
	}
	if diff := pySourcesDiffer(filepath.Join(pydir, "vitrage_synchronizer"), installed); diff != "" {
		t.Logf("the installed python3-vitrage-synchronizer differs from this checkout (%s): using python/", diff)
		return []string{"PYTHONPATH=" + pydir}
	}
	t.Logf("using the installed python3-vitrage-synchronizer (%s)", installed)
	return nil
}

// pySourcesDiffer names a .py file that is not the same in both trees.
func pySourcesDiffer(a, b string) string {
	seen := 0
	err := filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".py") {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		x, _ := os.ReadFile(p)
		y, err := os.ReadFile(filepath.Join(b, rel))
		if err != nil || !bytes.Equal(x, y) {
			return fs.ErrExist
		}
		seen++
		return nil
	})
	if err != nil || seen == 0 {
		return "not every module is the same"
	}
	n := 0
	filepath.WalkDir(b, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".py") {
			n++
		}
		return nil
	})
	if n != seen {
		return "the installed package has other modules"
	}
	return ""
}
