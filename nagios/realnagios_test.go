package nagios

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The real programs the tests run; scripts/deps.d/nagios.sh installs them.
const (
	nagiosBin  = "/usr/sbin/nagios4"
	checkDummy = "/usr/lib/nagios/plugins/check_dummy"
)

// realNagios is a Nagios Core 4 started by a test in a directory of its own,
// with one command, check_file, whose exit code and output are whatever the
// test last wrote into <dir>/<id>.code and <dir>/<id>.out.
type realNagios struct {
	t          *testing.T
	dir        string
	cfg        string
	statusFile string
	cmd        *exec.Cmd
	exited     chan error
}

// testService is a service of a test host; its check id is host_service.
type testHost struct {
	name     string
	services []string
}

func requireFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing (%v): run scripts/deps.d/nagios.sh (installs nagios4-core, "+
			"nagios4-cgi, monitoring-plugins-basic)", path, err)
	}
}

// startNagios writes a configuration for hosts, sets every check OK and
// starts Nagios. It returns once Nagios has run every check once.
func startNagios(t *testing.T, hosts []testHost) *realNagios {
	t.Helper()
	requireFile(t, nagiosBin)
	requireFile(t, checkDummy)
	// Short path: Nagios' query socket is a Unix socket (108-byte limit).
	dir, err := os.MkdirTemp("", "nagios")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &realNagios{t: t, dir: dir, cfg: filepath.Join(dir, "nagios.cfg"), statusFile: filepath.Join(dir, "status.dat")}
	if err := os.Mkdir(filepath.Join(dir, "spool"), 0o755); err != nil {
		t.Fatal(err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	// interval_length=1 makes every interval 1 s, and status.dat is
	// rewritten every second: a state the test sets shows within ~2 s.
	mainCfg := fmt.Sprintf(`log_file=%[1]s/nagios.log
cfg_file=%[1]s/objects.cfg
object_cache_file=%[1]s/objects.cache
precached_object_file=%[1]s/objects.precache
status_file=%[1]s/status.dat
status_update_interval=1
nagios_user=%[2]s
nagios_group=%[3]s
check_external_commands=1
command_file=%[1]s/nagios.cmd
command_check_interval=-1
lock_file=%[1]s/nagios.lock
temp_file=%[1]s/nagios.tmp
temp_path=%[1]s
check_result_path=%[1]s/spool
check_result_reaper_frequency=1
query_socket=%[1]s/nagios.qh
retain_state_information=0
interval_length=1
use_syslog=0
check_for_updates=0
enable_notifications=0
enable_flap_detection=0
max_service_check_spread=1
max_host_check_spread=1
service_inter_check_delay_method=n
host_inter_check_delay_method=n
cached_host_check_horizon=0
cached_service_check_horizon=0
`, dir, u.Username, g.Name)
	var obj strings.Builder
	fmt.Fprintf(&obj, `define command {
	command_name check_file
	command_line %[1]s $$(cat %[2]s/$ARG1$.code) "$$(cat %[2]s/$ARG1$.out)"
}
define timeperiod {
	timeperiod_name always
	alias always
	sunday 00:00-24:00
	monday 00:00-24:00
	tuesday 00:00-24:00
	wednesday 00:00-24:00
	thursday 00:00-24:00
	friday 00:00-24:00
	saturday 00:00-24:00
}
define contact {
	contact_name nobody
	host_notifications_enabled 0
	service_notifications_enabled 0
	host_notification_period always
	service_notification_period always
	host_notification_options n
	service_notification_options n
	host_notification_commands check_file!none
	service_notification_commands check_file!none
}
`, checkDummy, dir)
	common := "\tcheck_interval 1\n\tretry_interval 1\n\tmax_check_attempts 1\n\tcheck_period always\n" +
		"\tcontacts nobody\n\tnotification_period always\n"
	for _, h := range hosts {
		fmt.Fprintf(&obj, "define host {\n\thost_name %s\n\taddress 127.0.0.1\n\tcheck_command check_file!%s\n%s}\n",
			h.name, checkID(h.name, ""), common)
		n.Set(h.name, "", 0, "host "+h.name+" is fine")
		for _, s := range h.services {
			fmt.Fprintf(&obj, "define service {\n\thost_name %s\n\tservice_description %s\n\tcheck_command check_file!%s\n%s}\n",
				h.name, s, checkID(h.name, s), common)
			n.Set(h.name, s, 0, s+" is fine")
		}
	}
	n.write("nagios.cfg", mainCfg)
	n.write("objects.cfg", obj.String())

	out, err := os.Create(filepath.Join(dir, "nagios.out"))
	if err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(nagiosBin, n.cfg)
	n.cmd.Dir = dir
	n.cmd.Stdout, n.cmd.Stderr = out, out
	// Its own process group, so that stopping it also stops its workers.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", nagiosBin, err)
	}
	n.exited = make(chan error, 1)
	go func() { n.exited <- n.cmd.Wait(); out.Close() }()
	t.Cleanup(n.stop)

	n.WaitFor(20*time.Second, "every check run once", func(hs, ss []Check) bool {
		all := append(append([]Check(nil), hs...), ss...)
		for _, c := range all {
			if c.State == "PENDING" {
				return false
			}
		}
		return len(all) > 0
	})
	return n
}

func (n *realNagios) stop() {
	pgid := n.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-n.exited
	}
}

func checkID(host, service string) string {
	if service == "" {
		service = HostService
	}
	return host + "_" + service
}

func (n *realNagios) write(name, content string) {
	n.t.Helper()
	// Rename, so that a check running now reads the old or the new file,
	// never half of one.
	tmp := filepath.Join(n.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		n.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(n.dir, name)); err != nil {
		n.t.Fatal(err)
	}
}

// Set makes the next checks of a service (or of the host, service "")
// exit with code (0 OK/UP, 1 WARNING, 2 CRITICAL/DOWN, 3 UNKNOWN) and print
// output (check_dummy prefixes it with the state word).
func (n *realNagios) Set(host, service string, code int, output string) {
	id := checkID(host, service)
	n.write(id+".out", output)
	n.write(id+".code", fmt.Sprint(code))
	if n.cmd == nil {
		return // not started yet
	}
	// Ask for the check now rather than wait for its turn (the external
	// command interface, nagios.cmd, is a FIFO Nagios reads continuously).
	now := time.Now().Unix()
	line := fmt.Sprintf("[%d] SCHEDULE_FORCED_SVC_CHECK;%s;%s;%d\n", now, host, service, now)
	if service == "" {
		line = fmt.Sprintf("[%d] SCHEDULE_FORCED_HOST_CHECK;%s;%d\n", now, host, now)
	}
	f, err := os.OpenFile(filepath.Join(n.dir, "nagios.cmd"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		n.t.Fatalf("nagios command file: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		n.t.Fatalf("nagios command file: %v", err)
	}
}

// WaitFor polls the real status.dat until cond holds of its checks, failing
// the test at the deadline or when Nagios exits.
func (n *realNagios) WaitFor(timeout time.Duration, what string, cond func(hosts, services []Check) bool) {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case err := <-n.exited:
			n.exited <- err // for stop
			b, _ := os.ReadFile(filepath.Join(n.dir, "nagios.out"))
			n.t.Fatalf("nagios exited early (%v):\n%s", err, b)
		default:
		}
		st, err := ReadStatusFile(n.statusFile)
		if err == nil {
			var hs, ss []Check
			if hs, ss, err = st.Checks(); err == nil && cond(hs, ss) {
				return
			}
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	nlog, _ := os.ReadFile(filepath.Join(n.dir, "nagios.log"))
	n.t.Fatalf("nagios: %s: not within %s (last read error: %v); nagios.log:\n%s", what, timeout, lastErr, tail(nlog, 3000))
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// stateOf finds one check's state in a WaitFor condition.
func stateOf(checks []Check, host, service string) string {
	return checkOf(checks, host, service).State
}

func checkOf(checks []Check, host, service string) Check {
	for _, c := range checks {
		if c.Host == host && c.Service == service {
			return c
		}
	}
	return Check{}
}

// statusJSONCGI returns the path of Debian's statusjson.cgi, from the
// package's file list.
func statusJSONCGI(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("dpkg", "-L", "nagios4-cgi").Output()
	if err != nil {
		t.Fatalf("dpkg -L nagios4-cgi: %v: run scripts/deps.d/nagios.sh", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasSuffix(l, "/statusjson.cgi") {
			return l
		}
	}
	t.Fatalf("no statusjson.cgi in nagios4-cgi's files:\n%s", out)
	return ""
}

// ServeCGI serves the real statusjson.cgi of this Nagios on a test HTTP
// server with basic auth: a request with user and password runs the CGI as
// that user (REMOTE_USER, as a web server sets it), which cgi.cfg authorizes
// for everything when it is "tester"; a wrong password gets 401.
func (n *realNagios) ServeCGI(user, password string, useTLS bool) *httptest.Server {
	n.t.Helper()
	path := statusJSONCGI(n.t)
	cgiCfg := filepath.Join(n.dir, "cgi.cfg")
	n.write("cgi.cfg", fmt.Sprintf(`main_config_file=%s
physical_html_path=/usr/share/nagios4/htdocs
url_html_path=/nagios4
use_authentication=1
authorized_for_all_services=tester
authorized_for_all_hosts=tester
authorized_for_system_information=tester
authorized_for_configuration_information=tester
`, n.cfg))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="Nagios Access"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h := &cgi.Handler{Path: path, Dir: n.dir, Env: []string{"NAGIOS_CGI_CONFIG=" + cgiCfg, "REMOTE_USER=" + u}}
		h.ServeHTTP(w, r)
	}))
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	n.t.Cleanup(srv.Close)
	return srv
}

// getCGI fetches one query of the real CGI as tester, for looking at its raw
// output in failure messages.
func getCGI(srv *httptest.Server, query, user, password string) string {
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"?details=true&query="+query, nil)
	req.SetBasicAuth(user, password)
	resp, err := srv.Client().Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return b.String()
}
