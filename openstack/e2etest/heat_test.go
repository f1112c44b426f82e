package e2etest

import (
	"testing"

	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
)

// The Heat sample stack's id and the Nova sample server's.
const (
	stackID  = "3095aefc-09fb-4bc7-b1f0-f21a304e864c"
	serverID = "f5dc173b-6804-445a-a6d8-c705dad5b5eb"
)

// A copy of Heat's sample resource (an OS::Heat::RandomString) turned into
// a server: resource_type and physical_resource_id changed.
func server(id string) func(map[string]any) {
	return func(o map[string]any) {
		o["resource_type"] = "OS::Nova::Server"
		o["physical_resource_id"] = id
	}
}

// Stack resources through the engine: a resource added is one update of
// its stack; a failed resource list deletes no stack and leaves the other
// types' changes applied; a 404 keeps the stack, without resources.
func TestStackResourcesThroughEngine(t *testing.T) {
	r := newRig(t, 2)
	more := r.srv.AddStacks(2)
	steps := []struct {
		name                      string
		change                    func()
		created, updated, deleted int
	}{
		{"first poll", func() {}, 10 + 2, 0, 0},
		{"unchanged", func() {}, 0, 0, 0},
		{"server resource added", func() { r.srv.AddStackResource(stackID, server(serverID)) }, 0, 1, 0},
		{"volatile fields of the resources change", func() {
			r.srv.UpdateStackResources(stackID, func(o map[string]any) { o["updated_time"] = "2026-01-01T00:00:00" })
		}, 0, 0, 0},
		{"resource list fails, a stack removed, a server changed", func() {
			r.srv.Fail(openstacktest.Resources+"/"+stackID, openstacktest.Failure{Mode: openstacktest.Fail500})
			r.srv.Remove(openstacktest.Stacks, more[0])
			r.srv.SetServerStatus(serverID, "SHUTOFF")
		}, 0, 1, 0}, // the server; no stack deleted
		{"recovered", func() { r.srv.ClearFailures() }, 0, 0, 1}, // the removed stack
		{"404 for one stack", func() {
			r.srv.Fail(openstacktest.Resources+"/"+stackID, openstacktest.Failure{Mode: openstacktest.NotFound})
		}, 0, 1, 0}, // kept, without its resources
		{"404 again", func() {}, 0, 0, 0},
	}
	for _, s := range steps {
		s.change()
		res := r.poll(t)
		if res.Created != s.created || res.Updated != s.updated || res.Deleted != s.deleted {
			t.Errorf("%s: %+v, want created %d updated %d deleted %d", s.name, res, s.created, s.updated, s.deleted)
		}
	}
}
