package nagios

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/config/configtest"
)

// settings mirrors the collector entry of collectors/nagios.go.
type settings struct {
	config.Common `yaml:",inline"`
	Options       `yaml:",inline"`
}

func decode(t *testing.T, src string) (settings, error) {
	t.Helper()
	var s settings
	err := config.DecodeStrict(configtest.Node(t, src), &s)
	return s, err
}

func TestSettingsDecode(t *testing.T) {
	s, err := decode(t, `
name: nagios
type: nagios
interval: 20s
timeout: 5s
url: https://nagios.example/nagios4/cgi-bin/statusjson.cgi
user: vitrage
password_env: NAGIOS_PASSWORD
max_age: 5m
host_mapping:
  - {nagios_host: "compute-.*", type: nova.host, name: "${nagios_host}"}
`)
	if err != nil {
		t.Fatal(err)
	}
	if s.URL == "" || s.User != "vitrage" || s.PasswordEnv != "NAGIOS_PASSWORD" || s.MaxAge.D() != 5*time.Minute ||
		len(s.HostMapping) != 1 || s.HostMapping[0].Name != HostVar || s.Timeout.D() != 5*time.Second {
		t.Fatalf("decoded %+v", s)
	}
	if _, err := decode(t, "name: n\ntype: nagios\nstatus_fil: /x\n"); err == nil ||
		!strings.Contains(err.Error(), `line 3: unknown key "status_fil"`) {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	t.Setenv("NAGIOS_TEST_SET", "pw-from-env")
	const u = "http://127.0.0.1:1/statusjson.cgi"
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"nothing", Options{}, "status_file or url: required"},
		{"both", Options{StatusFile: "s", URL: u}, "set one, not both"},
		{"auth with file", Options{StatusFile: "s", User: "u"}, "only with url"},
		{"bad scheme", Options{URL: "ftp://x/statusjson.cgi"}, "scheme must be http or https"},
		{"unparsable url with credentials", Options{URL: "http://u:secret@127.0.0.1:bad/statusjson.cgi"}, "url: cannot parse it: invalid port"},
		{"credentials in url", Options{URL: "http://u:secret@127.0.0.1/statusjson.cgi"}, "not in the URL"},
		{"query in url", Options{URL: u + "?query=hostlist"}, "without a query"},
		{"password twice", Options{URL: u, User: "u", Password: "p", PasswordEnv: "NAGIOS_TEST_SET"}, "set one, not both"},
		{"env unset", Options{URL: u, User: "u", PasswordEnv: "NAGIOS_TEST_UNSET"}, "NAGIOS_TEST_UNSET is not set"},
		{"password without user", Options{URL: u, Password: "p"}, "user: required"},
		{"negative max_age", Options{StatusFile: "s", MaxAge: -1}, "max_age"},
		{"bad rule", Options{StatusFile: "s", HostMapping: []Mapping{{NagiosHost: "("}}}, "host_mapping[0]"},
		{"ca_file with file", Options{StatusFile: "s", CAFile: "ca.pem"}, "only with url"},
		{"missing ca_file", Options{URL: u, CAFile: "ca.pem"}, "ca_file"},
		{"missing mapping file", Options{StatusFile: "s", HostMappingFile: "nope.yaml"}, "host_mapping_file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o, 0, t.TempDir(), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "pw-from-env") {
				t.Fatalf("error shows a password: %v", err)
			}
		})
	}
}

func TestCollectFixture(t *testing.T) {
	dir := t.TempDir()
	b := readFixture(t)
	if err := os.WriteFile(filepath.Join(dir, "status.dat"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// A relative status_file is relative to the config's directory.
	c, err := New(Options{StatusFile: "status.dat"}, 0, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := c.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Never-checked (pending) hosts and services are no alarms, and the
	// listing is complete: it may delete.
	if len(snap.Entities) != 0 || len(snap.Types) != 1 || snap.Types[0] != Type {
		t.Fatalf("snapshot %+v", snap)
	}

	// The fixture was written in 2009: with max_age it is stale.
	c.maxAge = time.Hour
	if _, err := c.Collect(context.Background()); err == nil || !strings.Contains(err.Error(), "is Nagios running?") {
		t.Fatalf("stale: %v", err)
	}

	for name, content := range map[string][]byte{
		"truncated": b[:len(b)/2],
		"no hosts":  []byte("info {\n}\nprogramstatus {\n}\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, "status.dat"), content, 0o644); err != nil {
			t.Fatal(err)
		}
		c.maxAge = 0
		if snap, err := c.Collect(context.Background()); err == nil || snap != nil {
			t.Fatalf("%s: got %v, want an error", name, snap)
		}
	}
	os.Remove(filepath.Join(dir, "status.dat"))
	if _, err := c.Collect(context.Background()); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: %v", err)
	}
}

// TestCollectHTTPFailures: every way the CGI can fail is a failed poll.
func TestCollectHTTPFailures(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"HTTP 500", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		}, "HTTP 500"},
		{"time-out", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, "deadline exceeded"},
		{"HTML page", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("<html><body>login</body></html>"))
		}, "decode answer"},
		{"cut JSON", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"format_version": 0, "result": {"query": "hostlist", "type_code": 0}, "data": {"hostlist": {"h": {`))
		}, "decode answer"},
		{"CGI error", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"format_version": 0, "result": {"type_code": 6, "type_text": "Option Value Invalid", "message": "The query option value 'x' is invalid."}, "data": {}}`))
		}, "CGI error 6 Option Value Invalid"},
		{"no result", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"data": {"hostlist": {}}}`))
		}, "no result.type_code"},
		{"no list", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"result": {"query": "hostlist", "type_code": 0}, "data": {}}`))
		}, "no data.hostlist"},
		{"unknown status bit", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"result": {"query": "hostlist", "type_code": 0}, "data": {"hostlist": {"h": {"name": "h", "status": 3, "has_been_checked": true}}}}`))
		}, "h: unknown status 3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			c, err := New(Options{URL: srv.URL + "/statusjson.cgi", User: "u", Password: "pw-secret"}, 0, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			snap, err := c.Collect(ctx)
			if err == nil || snap != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, %v; want error %q", snap, err, tc.want)
			}
			if strings.Contains(err.Error(), "pw-secret") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}
