package e2e

// The Debian packages on this machine: build (or take $SYNCHRONIZER_DEB_DIR,
// where `make test` has just run `make deb`), dpkg -i, check the layout, the
// user and the unit, run the installed binary as systemd would run the
// unit, use the installed Python package, then dpkg --purge and check that
// nothing is left.

import (
	"bufio"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	unitPath   = "/lib/systemd/system/synchronizer.service"
	debSocket  = "/run/synchronizer/synchronizer.sock"
	debDB      = "/var/lib/synchronizer/synchronizer.db"
	debConfig  = "/etc/synchronizer/config.yaml"
	pySite     = "/usr/lib/python3/dist-packages"
	debLock    = "/run/lock/synchronizer-deb-test.lock"
	debPackage = "synchronizer"
	pyPackage  = "python3-vitrage-synchronizer"
)

// leftovers are the paths a purge must remove, beyond the packages' files.
var leftovers = []string{
	"/etc/synchronizer", "/var/lib/synchronizer", "/run/synchronizer",
	pySite + "/vitrage_synchronizer",
	"/etc/systemd/system/multi-user.target.wants/synchronizer.service",
	"/var/lib/systemd/deb-systemd-helper-enabled/synchronizer.service.dsh-also",
	"/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/synchronizer.service",
	"/var/lib/systemd/deb-systemd-helper-masked/synchronizer.service",
}

func TestDebianPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installs packages: needs root (as make test and CI run)")
	}
	unlock := debTestLock(t)
	defer unlock()
	debs := debFiles(t)
	// A run that died half-way left the packages installed.
	purge(t)
	t.Cleanup(func() { purge(t) })

	dpkg(t, append([]string{"-i"}, debs...)...)
	// Installing again (an upgrade to the same version) keeps the user
	// and the admin's edit of the conffile, without asking.
	edit := "\n# edited by the admin before an upgrade\n"
	f, err := os.OpenFile(debConfig, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(edit)
	f.Close()
	uid := mustRun(t, "id", "-u", "synchronizer")
	dpkg(t, append([]string{"--force-confold", "-i"}, debs...)...)
	if b, _ := os.ReadFile(debConfig); !strings.HasSuffix(string(b), edit) {
		t.Errorf("reinstalling lost the admin's edit of %s", debConfig)
	}
	if again := mustRun(t, "id", "-u", "synchronizer"); again != uid {
		t.Errorf("reinstalling changed the user: uid %s, then %s", uid, again)
	}

	files := strings.Fields(mustRun(t, "dpkg-query", "-L", debPackage, pyPackage))
	checkLayout(t)
	out, err := exec.Command("systemd-analyze", "verify", unitPath).CombinedOutput()
	if err != nil || strings.Contains(string(out), "synchronizer") {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitPath, err, out)
	}
	// The hardening stays where systemd-analyze security puts it (1.5
	// "OK" today; 2.0 is the bound, on its 0-100 scale 20).
	out, err = exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=20", unitPath).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0: %v\n%s", err, lastLines(string(out), 3))
	}
	t.Logf("systemd-analyze security: %s", lastLines(string(out), 1))

	runAsService(t)
	checkInstalledPython(t)

	purge(t)
	for _, f := range append(files, leftovers...) {
		if f == "/." || isSharedDir(f) {
			continue
		}
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("%s is left after dpkg --purge", f)
		}
	}
	if _, err := user.Lookup("synchronizer"); err == nil {
		t.Errorf("user synchronizer is left after dpkg --purge")
	}
	if _, err := user.LookupGroup("synchronizer"); err == nil {
		t.Errorf("group synchronizer is left after dpkg --purge")
	}
	for _, p := range []string{debPackage, pyPackage} {
		if st, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", p).Output(); strings.TrimSpace(string(st)) != "" && !strings.HasPrefix(string(st), "un") {
			t.Errorf("dpkg still knows %s after purge: %q", p, st)
		}
	}
}

// checkLayout: the files, their owners and modes, the user and group, the
// enabled unit.
func checkLayout(t *testing.T) {
	t.Helper()
	u, err := user.Lookup("synchronizer")
	if err != nil {
		t.Fatalf("postinst made no user: %v", err)
	}
	g, err := user.LookupGroup("synchronizer")
	if err != nil {
		t.Fatalf("postinst made no group: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	if uid >= 1000 || u.Gid != g.Gid || u.HomeDir != "/var/lib/synchronizer" {
		t.Errorf("user synchronizer: uid %s gid %s home %s; want a system uid (<1000), group synchronizer, home /var/lib/synchronizer", u.Uid, u.Gid, u.HomeDir)
	}
	if pw := mustRun(t, "getent", "passwd", "synchronizer"); !strings.HasSuffix(strings.TrimSpace(pw), ":/usr/sbin/nologin") {
		t.Errorf("user synchronizer can log in: %s", pw)
	}
	gid, _ := strconv.Atoi(g.Gid)
	for _, f := range []struct {
		path     string
		uid, gid int
		mode     os.FileMode
	}{
		{"/usr/bin/synchronizer", 0, 0, 0o755},
		{unitPath, 0, 0, 0o644},
		// The config may hold credentials: the service's group only.
		{debConfig, 0, gid, 0o640},
		{"/var/lib/synchronizer", uid, gid, 0o750 | os.ModeDir},
		{pySite + "/vitrage_synchronizer/datasources/base.py", 0, 0, 0o644},
	} {
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Errorf("layout: %v", err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != f.uid || int(st.Gid) != f.gid || fi.Mode()&(os.ModeDir|os.ModePerm) != f.mode {
			t.Errorf("%s: %d:%d %v, want %d:%d %v", f.path, st.Uid, st.Gid, fi.Mode(), f.uid, f.gid, f.mode)
		}
	}
	if cf := mustRun(t, "dpkg-query", "-W", "-f=${Conffiles}", debPackage); !strings.Contains(cf, debConfig) {
		t.Errorf("%s is not a conffile: %q", debConfig, cf)
	}
	if l, err := os.Readlink("/etc/systemd/system/multi-user.target.wants/synchronizer.service"); err != nil || l != unitPath {
		t.Errorf("the unit is not enabled: %q %v", l, err)
	}
	// The packaged config is valid as installed (it names no source yet:
	// check-config warns, and exits 0).
	if out, err := exec.Command("/usr/bin/synchronizer", "check-config", debConfig).CombinedOutput(); err != nil || !strings.Contains(string(out), ": ok (0 collectors, 0 listeners)") {
		t.Errorf("check-config %s: %v\n%s", debConfig, err, out)
	}
	if v := mustRun(t, "/usr/bin/synchronizer", "--version"); !strings.HasPrefix(v, "synchronizer ") || strings.Contains(v, "(devel)") {
		t.Errorf("installed binary's version: %q", v)
	}
}

// runAsService starts the installed binary as the unit would: its
// ExecStart, as user and group synchronizer, no new privileges, no
// capabilities, umask 0077, in the RuntimeDirectory systemd creates, with a
// NOTIFY_SOCKET. It then uses the socket as a member of the socket's group
// and as a user who is not.
func runAsService(t *testing.T) {
	t.Helper()
	unit := readUnit(t)
	for key, want := range map[string]string{
		"Type": "notify", "User": "synchronizer", "Group": "synchronizer", "UMask": "0077",
		"RuntimeDirectory": "synchronizer", "StateDirectory": "synchronizer",
		"ProtectSystem": "strict", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "SystemCallFilter": "@system-service",
	} {
		if got, ok := unit[key]; !ok || got != want {
			t.Errorf("unit: %s=%q, want %q", key, got, want)
		}
	}
	// systemd's RuntimeDirectory=synchronizer, RuntimeDirectoryMode=0750.
	os.RemoveAll("/run/synchronizer")
	mustRun(t, "install", "-d", "-o", "synchronizer", "-g", "synchronizer", "-m", unit["RuntimeDirectoryMode"], "/run/synchronizer")
	notifyDir, err := os.MkdirTemp("", "synchronizer-notify")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(notifyDir)
	os.Chmod(notifyDir, 0o755)
	ns := newNotifySocket(t, notifyDir)
	os.Chmod(ns.path, 0o666) // systemd's socket is writable by every service

	args := []string{"--reuid=synchronizer", "--regid=synchronizer", "--init-groups",
		"--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--",
		"/bin/sh", "-c", "umask " + unit["UMask"] + ` && exec "$@"`, "sh"}
	args = append(args, strings.Fields(unit["ExecStart"])...)
	cmd := exec.Command("setpriv", args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "NOTIFY_SOCKET=" + ns.path, "WATCHDOG_USEC=1000000"}
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("installed synchronizer's log:\n%s", log.String())
		}
	}()
	ns.next("READY=1", 30*time.Second)
	ns.next("WATCHDOG=1", 5*time.Second)

	check := func(path string, uid string, mode os.FileMode) {
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("%v", err)
			return
		}
		st := fi.Sys().(*syscall.Stat_t)
		g, _ := user.LookupGroup("synchronizer")
		if strconv.Itoa(int(st.Uid)) != uid || strconv.Itoa(int(st.Gid)) != g.Gid || fi.Mode().Perm() != mode {
			t.Errorf("%s: %d:%d %v, want user synchronizer, group synchronizer, %v", path, st.Uid, st.Gid, fi.Mode().Perm(), mode)
		}
	}
	u, _ := user.Lookup("synchronizer")
	check(debSocket, u.Uid, 0o660) // socket_group: synchronizer
	check(debDB, u.Uid, 0o600)     // UMask=0077

	// A consumer in the group (as Vitrage's user after `adduser vitrage
	// synchronizer`) uses the socket; one outside it cannot.
	g, _ := user.LookupGroup("synchronizer")
	member := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--groups="+g.Gid, "--",
		"/usr/bin/synchronizer", "status", "--socket", debSocket)
	if out, err := member.CombinedOutput(); err != nil || !strings.Contains(string(out), `"last_seq"`) {
		t.Errorf("status as a member of group synchronizer: %v\n%s", err, out)
	}
	stranger := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
		"/usr/bin/synchronizer", "status", "--socket", debSocket)
	if out, err := stranger.CombinedOutput(); err == nil || !strings.Contains(string(out), "permission denied") {
		t.Errorf("status as a user outside group synchronizer: %v\n%s", err, out)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	ns.next("STOPPING=1", 10*time.Second)
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("installed synchronizer exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("installed synchronizer did not stop on SIGTERM")
	}
	if _, err := os.Lstat(debSocket); err == nil {
		t.Errorf("socket left after stop")
	}
}

// checkInstalledPython imports every datasource from the .deb with Debian's
// python3, isolated (-I: no PYTHONPATH, no user site, not the working
// directory), and reads the installed synchronizer's status with the
// installed client.
func checkInstalledPython(t *testing.T) {
	t.Helper()
	mods := []string{"vitrage_synchronizer.client"}
	for _, typ := range []string{"nova.instance", "nova.host", "nova.zone", "neutron.network", "neutron.port",
		"cinder.volume", "heat.stack", "nagios", "static"} {
		mods = append(mods, "vitrage_synchronizer.datasources."+typ, "vitrage_synchronizer.datasources."+typ+".driver")
	}
	script := "import importlib, sys\n" +
		"for m in sys.argv[1:]:\n" +
		"    mod = importlib.import_module(m)\n" +
		"    print(mod.__file__)\n" +
		"    assert mod.__file__.startswith('" + pySite + "/'), mod.__file__\n" +
		"    if m.endswith('.driver'):\n" +
		"        assert any(n.endswith('Driver') for n in dir(mod)), m\n" +
		"    elif m != 'vitrage_synchronizer.client':\n" +
		"        assert mod.OPTS, m\n"
	cmd := exec.Command("/usr/bin/python3", append([]string{"-I", "-c", script}, mods...)...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("importing the installed datasources: %v\n%s", err, out)
	}
	// postinst compiled them, as dh_python3 does: nothing appears later
	// that dpkg --purge would leave behind.
	if pyc, _ := filepath.Glob(pySite + "/vitrage_synchronizer/datasources/__pycache__/base.cpython-*.pyc"); len(pyc) == 0 {
		t.Errorf("postinst did not byte-compile the package")
	}
}

// readUnit returns the [Service] settings of the installed unit (the last
// value of each key).
func readUnit(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	section := ""
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[':
			section = l
		case section == "[Service]":
			if k, v, ok := strings.Cut(l, "="); ok {
				out[k] = v
			}
		}
	}
	return out
}

// debFiles returns the two .debs: from $SYNCHRONIZER_DEB_DIR (make test
// has just built them) or built now.
func debFiles(t *testing.T) []string {
	t.Helper()
	dir := os.Getenv("SYNCHRONIZER_DEB_DIR")
	if dir == "" {
		dir = t.TempDir()
		if out, err := exec.Command("bash", "packaging/build-deb.sh", dir, testVersion).CombinedOutput(); err != nil {
			t.Fatalf("build-deb.sh: %v\n%s", err, out)
		}
	}
	var debs []string
	for _, p := range []string{debPackage + "_*.deb", pyPackage + "_*_all.deb"} {
		m, _ := filepath.Glob(filepath.Join(dir, p))
		if len(m) != 1 {
			t.Fatalf("%s in %s: %v, want exactly one", p, dir, m)
		}
		debs = append(debs, m[0])
	}
	return debs
}

// purge removes both packages (installed or not).
func purge(t *testing.T) {
	t.Helper()
	dpkg(t, "--purge", pyPackage, debPackage)
}

// dpkg runs dpkg, waiting while another dpkg or apt holds its lock (other
// tests' deps scripts may be installing).
func dpkg(t *testing.T, args ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		cmd := exec.Command("dpkg", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err == nil {
			return
		}
		if strings.Contains(string(out), "lock") && time.Now().Before(deadline) {
			time.Sleep(2 * time.Second)
			continue
		}
		t.Fatalf("dpkg %v: %v\n%s", args, err, out)
	}
}

// debTestLock keeps two runs of this test (two checkouts on one machine)
// from installing and purging under each other.
func debTestLock(t *testing.T) func() {
	t.Helper()
	f, err := os.OpenFile(debLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() { f.Close() }
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// isSharedDir: directories the packages list but do not own alone.
func isSharedDir(p string) bool {
	fi, err := os.Stat(p) // /lib is a symlink to usr/lib

	if err != nil || !fi.IsDir() {
		return false
	}
	return !strings.Contains(p, "synchronizer")
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
