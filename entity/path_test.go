package entity

import (
	"encoding/json"
	"testing"
)

func TestDropField(t *testing.T) {
	const doc = `{"uptime": 1, "a.b": 2, "a": {"b": 3, "c": 4}, "hypervisors": [{"uptime": 5, "id": 1}, {"uptime": 6, "id": 2}],
		"hosts": {"h1": {"svc": {"updated_at": 7, "up": true}}, "h2": {"svc": {"updated_at": 8, "up": false}}}, "s": "x"}`
	const unchanged = `{"a":{"b":3,"c":4},"a.b":2,"hosts":{"h1":{"svc":{"up":true,"updated_at":7}},"h2":{"svc":{"up":false,"updated_at":8}}},"hypervisors":[{"id":1,"uptime":5},{"id":2,"uptime":6}],"s":"x","uptime":1}`
	// want "" means data is unchanged.
	tests := []struct{ path, want string }{
		{"uptime", `{"a":{"b":3,"c":4},"a.b":2,"hosts":{"h1":{"svc":{"up":true,"updated_at":7}},"h2":{"svc":{"up":false,"updated_at":8}}},"hypervisors":[{"id":1,"uptime":5},{"id":2,"uptime":6}],"s":"x"}`},
		// The dotted key wins over nesting: "a.b" (2) goes, a → b (3) stays.
		{"a.b", `{"a":{"b":3,"c":4},"hosts":{"h1":{"svc":{"up":true,"updated_at":7}},"h2":{"svc":{"up":false,"updated_at":8}}},"hypervisors":[{"id":1,"uptime":5},{"id":2,"uptime":6}],"s":"x","uptime":1}`},
		{"a.c", `{"a":{"b":3},"a.b":2,"hosts":{"h1":{"svc":{"up":true,"updated_at":7}},"h2":{"svc":{"up":false,"updated_at":8}}},"hypervisors":[{"id":1,"uptime":5},{"id":2,"uptime":6}],"s":"x","uptime":1}`},
		{"hypervisors.*.uptime", `{"a":{"b":3,"c":4},"a.b":2,"hosts":{"h1":{"svc":{"up":true,"updated_at":7}},"h2":{"svc":{"up":false,"updated_at":8}}},"hypervisors":[{"id":1},{"id":2}],"s":"x","uptime":1}`},
		{"hosts.*.*.updated_at", `{"a":{"b":3,"c":4},"a.b":2,"hosts":{"h1":{"svc":{"up":true}},"h2":{"svc":{"up":false}}},"hypervisors":[{"id":1,"uptime":5},{"id":2,"uptime":6}],"s":"x","uptime":1}`},
		{"a.*", `{"a":{},"a.b":2,"hosts":{"h1":{"svc":{"up":true,"updated_at":7}},"h2":{"svc":{"up":false,"updated_at":8}}},"hypervisors":[{"id":1,"uptime":5},{"id":2,"uptime":6}],"s":"x","uptime":1}`},
		{"missing.deep.path", ""},
		{"s.x", ""},
		{"hypervisors.0.uptime", ""}, // list elements are matched by "*" only
	}
	for _, tc := range tests {
		var m map[string]any
		if err := json.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		DropField(m, tc.path)
		got, _ := json.Marshal(m)
		want := tc.want
		if want == "" {
			want = unchanged
		}
		if string(got) != want {
			t.Errorf("drop %q:\n got %s\nwant %s", tc.path, got, want)
		}
	}
}
