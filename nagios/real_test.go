package nagios

import (
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/engine"
	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/store/storetest"
)

// TestRealNagios runs Debian's Nagios Core 4 with checks the test controls
// and reads it both ways: its real status.dat and its real statusjson.cgi
// served through net/http/cgi. Both must give the same alarms.
func TestRealNagios(t *testing.T) {
	n := startNagios(t, []testHost{
		{name: "compute-1", services: []string{"Web", "Disk"}},
		{name: "compute-2", services: []string{"Web"}},
		{name: "switch-1", services: []string{"Ping"}},
	})
	srv := n.ServeCGI("tester", "s3cret-pw", false)
	mapping := []Mapping{{NagiosHost: "compute-.*", Type: "nova.host", Name: HostVar}}
	fileCol, err := New(Options{StatusFile: n.statusFile, HostMapping: mapping}, 0, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NAGIOS_TEST_PW", "s3cret-pw")
	cgiCol, err := New(Options{URL: srv.URL, User: "tester", PasswordEnv: "NAGIOS_TEST_PW", HostMapping: mapping},
		10*time.Second, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	// collect polls both ways and checks they agree.
	collect := func(t *testing.T) map[string]entity.Entity {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		fromFile, err := fileCol.Collect(ctx)
		if err != nil {
			t.Fatalf("status file: %v", err)
		}
		fromCGI, err := cgiCol.Collect(ctx)
		if err != nil {
			t.Fatalf("cgi: %v", err)
		}
		for _, s := range []*entity.Snapshot{fromFile, fromCGI} {
			if !reflect.DeepEqual(s.Types, []string{Type}) {
				t.Fatalf("types %v, want [nagios]", s.Types)
			}
		}
		a, b := byKey(fromFile), byKey(fromCGI)
		if !reflect.DeepEqual(a, b) {
			// The CGI reads the status file again, a moment later: a check
			// that ran in between makes them differ in last_check only.
			t.Logf("status file and CGI differ (a check may have run in between):\nfile %v\ncgi  %v\ncgi raw: %s",
				a, b, getCGI(srv, "servicelist", "tester", "s3cret-pw"))
			return nil
		}
		return a
	}
	// collectStable retries collect until both ways agree (they are read at
	// slightly different times while Nagios checks every second).
	collectStable := func(t *testing.T) map[string]entity.Entity {
		t.Helper()
		for i := 0; i < 20; i++ {
			if got := collect(t); got != nil {
				return got
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatal("status file and CGI never agreed")
		return nil
	}

	// The status-file snapshots also go through the real engine and store,
	// which must turn them into creates and deletes.
	eng := newEngine(t)
	apply := func(t *testing.T, want engine.Result) {
		t.Helper()
		snap, err := fileCol.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		res, err := eng.ApplySnapshot(context.Background(), snap, engine.SnapshotOptions{
			Source: "nagios", StartedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		res.Seq, res.Held = 0, nil
		if !reflect.DeepEqual(res, want) {
			t.Fatalf("engine result %+v, want %+v", res, want)
		}
	}

	t.Run("all OK: no alarms", func(t *testing.T) {
		if got := collectStable(t); len(got) != 0 {
			t.Fatalf("alarms %v, want none", got)
		}
		apply(t, engine.Result{})
	})

	t.Run("service CRITICAL: alarm on its host", func(t *testing.T) {
		n.Set("compute-1", "Web", 2, "HTTP 503 Service Unavailable\nbackend web-a down\nbackend web-b down")
		n.Set("switch-1", "Ping", 1, "packet loss 40%")
		n.WaitFor(20*time.Second, "compute-1/Web CRITICAL and switch-1/Ping WARNING", func(_, ss []Check) bool {
			return stateOf(ss, "compute-1", "Web") == "CRITICAL" && stateOf(ss, "switch-1", "Ping") == "WARNING"
		})
		got := collectStable(t)
		if len(got) != 2 {
			t.Fatalf("alarms %v, want 2", got)
		}
		web := got["nagios:compute-1:Web"]
		if web.Type != "nagios" || web.ID != "compute-1:Web" || web.Name != "Web" || web.State != "CRITICAL" ||
			web.ParentKey != "nova.host:compute-1" {
			t.Errorf("web alarm %+v", web)
		}
		d := web.Data
		if d["plugin_output"] != "CRITICAL: HTTP 503 Service Unavailable" ||
			d["long_plugin_output"] != "backend web-a down\nbackend web-b down" {
			t.Errorf("output %q / %q", d["plugin_output"], d["long_plugin_output"])
		}
		if d["current_attempt"] != 1 || d["max_attempts"] != 1 || d["state_type"] != "HARD" ||
			d["host"] != "compute-1" || d["service"] != "Web" || d["status"] != "CRITICAL" {
			t.Errorf("data %v", d)
		}
		lc, err := time.Parse(time.RFC3339, d["last_state_change"].(string))
		if err != nil || time.Since(lc) > time.Minute || time.Since(lc) < -time.Minute {
			t.Errorf("last_state_change %v (%v), want about now", d["last_state_change"], err)
		}
		if _, ok := d["last_check"]; ok {
			t.Errorf("last_check in data (it moves on every check): %v", d)
		}
		st := cgiCol.Status()
		if st["url"] != srv.URL || st["hosts"] != 3 || st["services"] != 4 || st["alarms"] != 2 {
			t.Errorf("status %v", st)
		}
		if fs := fileCol.Status(); fs["status_file"] != n.statusFile || fs["nagios_updated"] == nil {
			t.Errorf("status %v", fs)
		}
		ping := got["nagios:switch-1:Ping"]
		if ping.State != "WARNING" || ping.ParentKey != "" || ping.Data["plugin_output"] != "WARNING: packet loss 40%" {
			t.Errorf("ping alarm (no mapping rule for switch-1) %+v", ping)
		}
		apply(t, engine.Result{Created: 2})
	})

	t.Run("host DOWN: host alarm", func(t *testing.T) {
		var webChecked time.Time
		n.WaitFor(20*time.Second, "compute-1/Web checked", func(_, ss []Check) bool {
			webChecked = checkOf(ss, "compute-1", "Web").LastCheck
			return !webChecked.IsZero()
		})
		n.Set("compute-2", "", 2, "no route to host")
		// The two alarms are checked again meanwhile, in the same state:
		// no update (Unchanged below).
		n.WaitFor(20*time.Second, "compute-2 DOWN and compute-1/Web checked again", func(hs, ss []Check) bool {
			return stateOf(hs, "compute-2", "") == "DOWN" && checkOf(ss, "compute-1", "Web").LastCheck.After(webChecked)
		})
		got := collectStable(t)
		h, ok := got["nagios:compute-2:HOST"]
		if !ok || h.State != "DOWN" || h.Name != HostService || h.ParentKey != "nova.host:compute-2" ||
			h.Data["plugin_output"] != "CRITICAL: no route to host" || h.Data["service"] != HostService {
			t.Fatalf("host alarm %+v in %v", h, got)
		}
		apply(t, engine.Result{Created: 1, Unchanged: 2})
	})

	t.Run("back to OK: alarms gone", func(t *testing.T) {
		n.Set("compute-1", "Web", 0, "HTTP 200")
		n.Set("switch-1", "Ping", 0, "rta 0.1ms")
		n.Set("compute-2", "", 0, "up again")
		n.WaitFor(20*time.Second, "everything OK", func(hs, ss []Check) bool {
			for _, c := range append(hs, ss...) {
				if c.Problem() {
					return false
				}
			}
			return true
		})
		if got := collectStable(t); len(got) != 0 {
			t.Fatalf("alarms %v, want none", got)
		}
		apply(t, engine.Result{Deleted: 3})
	})

	t.Run("truncated real status file fails the poll", func(t *testing.T) {
		b, err := os.ReadFile(n.statusFile)
		if err != nil {
			t.Fatal(err)
		}
		// Cut inside the second servicestatus block, after its host_name.
		i := strings.Index(b2s(b), "servicestatus {")
		j := strings.Index(b2s(b[i+1:]), "servicestatus {")
		cut := i + 1 + j + len("servicestatus {\n\thost_name=")
		p := filepath.Join(t.TempDir(), "status.dat")
		if err := os.WriteFile(p, b[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		snap, err := pollOnce(t, Options{StatusFile: p})
		if err == nil || snap != nil || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("got %v, %v; want a truncation error", snap, err)
		}
	})

	t.Run("CGI user who may see nothing fails the poll", func(t *testing.T) {
		// The real CGI answers an unauthorized user with empty lists and
		// "Success": taken at its word, that would delete every alarm.
		other := n.ServeCGI("guest", "guest-pw", false)
		snap, err := pollOnce(t, Options{URL: other.URL, User: "guest", Password: "guest-pw"})
		if err == nil || snap != nil || !strings.Contains(err.Error(), "no hosts") {
			t.Fatalf("got %v, %v; want a no-hosts error", snap, err)
		}
	})

	t.Run("https with ca_file", func(t *testing.T) {
		tsrv := n.ServeCGI("tester", "s3cret-pw", true)
		ca := filepath.Join(t.TempDir(), "ca.pem")
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tsrv.Certificate().Raw})
		if err := os.WriteFile(ca, pemBytes, 0o644); err != nil {
			t.Fatal(err)
		}
		o := Options{URL: tsrv.URL, User: "tester", Password: "s3cret-pw"}
		if _, err := pollOnce(t, o); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("without ca_file: %v, want a certificate error", err)
		}
		o.CAFile = ca
		if snap, err := pollOnce(t, o); err != nil || len(snap.Types) != 1 {
			t.Fatalf("with ca_file: %v, %v", snap, err)
		}
	})

	t.Run("wrong password fails the poll and is not shown", func(t *testing.T) {
		snap, err := pollOnce(t, Options{URL: srv.URL, User: "tester", Password: "wrong-pw"})
		if err == nil || snap != nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("got %v, %v; want HTTP 401", snap, err)
		}
		if strings.Contains(err.Error(), "wrong-pw") {
			t.Fatalf("error shows the password: %v", err)
		}
	})
}

// pollOnce makes a collector of o (10 s per HTTP request, for a CGI) and
// polls it once.
func pollOnce(t *testing.T, o Options) (*entity.Snapshot, error) {
	t.Helper()
	c, err := New(o, 10*time.Second, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.Collect(context.Background())
}

func newEngine(t *testing.T) *engine.Engine {
	t.Helper()
	st := storetest.Open(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	eng, err := engine.New(context.Background(), st, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

func byKey(s *entity.Snapshot) map[string]entity.Entity {
	m := map[string]entity.Entity{}
	for _, e := range s.Entities {
		m[e.Key] = e
	}
	return m
}

func b2s(b []byte) string { return string(b) }
