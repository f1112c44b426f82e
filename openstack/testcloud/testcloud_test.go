package testcloud

import (
	"fmt"
	"net/http"
	"os"
	"testing"
)

func TestOrphan(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{fmt.Sprintf("tc-%d-1-x", os.Getpid()), false},  // this process
		{fmt.Sprintf("tc-%d-1-x", os.Getppid()), false}, // a live process
		{"tc-999999999-1-x", true},                      // no such process
		{"tc-abc-1-x", false},
		{"web-1", false},
		{"tc-", false},
	} {
		if got := orphan(tc.name); got != tc.want {
			t.Errorf("orphan(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestLifecycle drives each helper once against the real cloud.
func TestLifecycle(t *testing.T) {
	c := Start(t)
	srv := c.CreateServer(t, Name("srv"), "#cloud-config\n")
	vol := c.CreateVolume(t, Name("vol"))
	net := c.CreateNetwork(t, Name("net"))
	port := c.CreatePort(t, Name("port"), net)
	stackName := Name("stack")
	stack := c.CreateStack(t, stackName, StackTemplate(PhysNet()))
	c.WaitServer(t, srv, "ACTIVE")
	c.ServerAction(t, srv, "os-stop")
	c.WaitServer(t, srv, "SHUTOFF")
	c.WaitVolume(t, vol, "available")
	c.WaitStack(t, stackName, stack, "CREATE_COMPLETE")
	servers := c.List(t, "compute:/servers/detail?all_tenants=1&limit=1", "servers")
	found := false
	for _, s := range servers {
		found = found || s["id"] == srv
	}
	if !found {
		t.Fatalf("server %s not in a paged listing of %d", srv, len(servers))
	}
	c.DeleteStack(t, stackName, stack)
	c.Must(t, http.MethodDelete, "network:/v2.0/ports/"+port, nil, nil)
	c.Must(t, http.MethodDelete, "network:/v2.0/networks/"+net, nil, nil)
	c.Must(t, http.MethodDelete, "volume:/volumes/"+vol, nil, nil)
	c.WaitGone(t, "volume:/volumes/"+vol)
	c.DeleteServer(t, srv)
}
