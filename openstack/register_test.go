package openstack_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openstack-synchronizer/synchronizer/collectors"
	"github.com/openstack-synchronizer/synchronizer/config/configtest"
	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
)

// The collector type "openstack" decodes its settings strictly, next to the
// common keys, and polls.
func TestRegisteredType(t *testing.T) {
	srv, err := openstacktest.New(openstacktest.Options{Password: "pw-12345"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "clouds.yaml"), []byte(srv.CloudsYAML("test", "pw-12345")), 0o600); err != nil {
		t.Fatal(err)
	}
	entry := `
name: cloud
type: openstack
cloud: test
clouds_file: clouds.yaml
region: RegionOne
interface: public
types: [nova.instance, heat.stack]
request_timeout: 5s
retries: 1
retry_backoff: 100ms
page_size: 50
nova_microversion: "2.96"
incremental: true
full_every: 5m
delta_overlap: 3s
interval: 60s
volatile_fields: {nova.host: [uptime]}
`
	c, err := collectors.New("openstack", collectors.Settings{Name: "cloud", Node: configtest.Node(t, entry), Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := c.Collect(context.Background())
	if err != nil || len(snap.Entities) != 2 || len(snap.Types) != 2 {
		t.Fatalf("collect: %+v, %v", snap, err)
	}
	if srv.LastMicroversion() != "2.96" {
		t.Errorf("microversion %s", srv.LastMicroversion())
	}

	_, err = collectors.New("openstack", collectors.Settings{Name: "cloud", Node: configtest.Node(t, entry+"passwrod: x\n"), Dir: dir})
	if err == nil || !strings.Contains(err.Error(), `unknown key "passwrod"`) {
		t.Errorf("unknown key: err = %v", err)
	}
	_, err = collectors.New("openstack", collectors.Settings{Name: "cloud", Node: configtest.Node(t, strings.Replace(entry, "cloud: test", "cloud: nope", 1)), Dir: dir})
	if err == nil || !strings.Contains(err.Error(), `cloud "nope" not found`) {
		t.Errorf("missing cloud: err = %v", err)
	}
}
