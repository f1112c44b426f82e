package openstack

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
)

// No password or token appears in any log line (debug included), error or
// status, through successes, 5xx, time-outs, 401s, re-authentication and a
// failed login.
func TestNoSecretsAnywhere(t *testing.T) {
	f := newFixture(t, openstacktest.Options{}, func(o *Options) {
		o.RequestTimeout = config.Duration(time.Second)
	})
	var seen []string // errors and status documents
	poll := func() {
		_, err := f.c.Collect(context.Background())
		if err != nil {
			seen = append(seen, err.Error())
		}
		st, err := json.Marshal(f.c.Status())
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, string(st))
	}
	poll()
	f.srv.Fail(openstacktest.Servers, openstacktest.Failure{Mode: openstacktest.Fail500})
	f.srv.Fail(openstacktest.Networks, openstacktest.Failure{Mode: openstacktest.Hang})
	f.srv.Fail(openstacktest.Ports, openstacktest.Failure{Mode: openstacktest.Unauthorized})
	f.srv.Fail(openstacktest.Resources, openstacktest.Failure{Mode: openstacktest.Unauthorized})
	poll()
	// A stack's resource list: 500, then a time-out, then gone (404).
	for _, mode := range []openstacktest.Mode{openstacktest.Fail500, openstacktest.Hang, openstacktest.NotFound} {
		f.srv.ClearFailures()
		f.srv.Fail(openstacktest.Resources, openstacktest.Failure{Mode: mode})
		poll()
	}
	f.srv.ClearFailures()
	f.srv.ExpireTokens()
	poll()
	f.srv.ExpireTokens()
	f.srv.Fail(openstacktest.Keystone, openstacktest.Failure{Mode: openstacktest.Fail500})
	poll()
	f.srv.ClearFailures()
	poll()

	// A login refused outright, and a token from clouds.yaml.
	bad := newFixture(t, openstacktest.Options{}, func(o *Options) {
		o.Auth = &AuthInfo{Password: "An0ther-Secret-Word"}
	})
	if _, err := bad.c.Collect(context.Background()); err != nil {
		seen = append(seen, err.Error())
	} else {
		t.Error("login with a wrong password succeeded")
	}
	st, _ := json.Marshal(bad.c.Status())
	seen = append(seen, string(st))

	secrets := append([]string{testPassword, "An0ther-Secret-Word"}, f.srv.IssuedTokens()...)
	if len(f.srv.IssuedTokens()) < 3 {
		t.Fatalf("only %d tokens issued: the test did not re-authenticate", len(f.srv.IssuedTokens()))
	}
	logs := f.log.String() + bad.log.String()
	if testing.Verbose() {
		t.Log(logs)
	}
	if !strings.Contains(logs, "openstack listing failed") || !strings.Contains(logs, "openstack authentication failed") {
		t.Fatal("no failure was logged: the log capture is broken")
	}
	if !strings.Contains(logs, "list resources of stack") || !strings.Contains(logs, "heat stack gone before its resources were listed") {
		t.Fatal("no resource list failure was logged")
	}
	for _, sec := range secrets {
		if strings.Contains(logs, sec) {
			t.Errorf("secret %.6s... in the log", sec)
		}
		for _, s := range seen {
			if strings.Contains(s, sec) {
				t.Errorf("secret %.6s... in %s", sec, s)
			}
		}
	}
}

// Secrets echoed back by a service are replaced in errors.
func TestRedact(t *testing.T) {
	s := &session{cloud: &cloud{secrets: []string{"hunter2-password"}}, seen: []string{"gAAAAtoken123"}}
	err := s.redact(&HTTPError{Method: "GET", URL: "http://x/", Status: 400, Message: "bad password hunter2-password for token gAAAAtoken123"})
	if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "gAAAAtoken123") {
		t.Errorf("not redacted: %v", err)
	}
	var he *HTTPError
	if !asHTTP(err, &he) || he.Status != 400 {
		t.Errorf("redacted error lost its chain: %v", err)
	}
}

// userData is what a server booted with cloud-init user data carries in
// Nova's admin view (microversion 2.3+): base64 of a cloud-config.
const userData = "I2Nsb3VkLWNvbmZpZwpwYXNzd29yZDogaHVudGVyMi1zM2NyZXQK" // "#cloud-config\npassword: hunter2-s3cret\n"

// A server's user data and admin password are dropped before the entity is
// made: neither its data nor anything derived from it holds them, in full
// and in change listings.
func TestServerSecretsDropped(t *testing.T) {
	f := newFixture(t, openstacktest.Options{PageSize: 10}, func(o *Options) { o.Types = []string{TypeInstance} })
	id := f.srv.IDs(openstacktest.Servers)[0]
	f.srv.Update(openstacktest.Servers, id, func(o map[string]any) {
		o["OS-EXT-SRV-ATTR:user_data"] = userData
		o["adminPass"] = "Adm1nPass-secret"
	})
	f.srv.Advance(time.Minute)
	for _, poll := range []string{"full", "delta"} {
		snap := f.applied(t)
		if got := typeStatus(f.c, TypeInstance).Mode; got != poll {
			t.Fatalf("%s poll ran as %s", poll, got)
		}
		if poll == "delta" && len(snap.Entities) != 1 {
			t.Fatalf("delta listed %d servers", len(snap.Entities))
		}
		e := byKey(snap)[TypeInstance+":"+id]
		if _, ok := e.Data["OS-EXT-SRV-ATTR:user_data"]; ok || e.Data["adminPass"] != nil || e.Data["OS-EXT-STS:vm_state"] == nil {
			t.Errorf("%s poll: data %v", poll, e.Data)
		}
		b, _ := json.Marshal(snap.Entities)
		if strings.Contains(string(b), userData) || strings.Contains(string(b), "Adm1nPass") {
			t.Errorf("%s poll: a secret in the entities", poll)
		}
		f.srv.Update(openstacktest.Servers, id, func(o map[string]any) { o["status"] = "SHUTOFF" })
		f.srv.Advance(time.Minute)
	}
}
