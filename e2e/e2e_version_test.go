package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestVersion: the binary names its build on the command line and in status.
func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		if !strings.HasPrefix(string(out), "synchronizer "+testVersion+" ") {
			t.Errorf("%v printed %q, want the stamped version %s", args, out, testVersion)
		}
	}
	if err := exec.Command(binary, "version", "extra").Run(); err == nil {
		t.Errorf("version with an argument succeeded")
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("version with an argument: %v, want exit code 2", err)
	}

	s := startSidecar(t, "", "collectors: []\n")
	defer s.stop()
	out, err := s.cli("status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var st struct {
		Version struct {
			Version   string `json:"version"`
			GoVersion string `json:"go_version"`
		} `json:"version"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, out)
	}
	if st.Version.Version != testVersion || !strings.HasPrefix(st.Version.GoVersion, "go") {
		t.Errorf("status version = %+v, want %s", st.Version, testVersion)
	}
}
