package publishers

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/openstack-synchronizer/synchronizer/config"
)

func TestStreamConfig(t *testing.T) {
	for _, tc := range []struct {
		name, conf, err string
	}{
		{"minimal", `urls: ["amqp://u:secret@h:5672/"]`, ""},
		{"oslo multi-host", `urls: ["rabbit://u:secret@h1:5672,u:secret@h2:5672/v"]`, ""},
		{"no urls", `stream: s`, "urls: at least one broker URL is required"},
		{"bad scheme", `urls: ["http://u:secret@h/"]`, `scheme "http"`},
		{"tls needs amqps", "urls: [\"amqp://u:secret@h/\"]\ntls: {insecure_skip_verify: true}", "use amqps://"},
		{"short max_age", "urls: [\"amqp://h/\"]\nmax_age: 10ms", "max_age: 0 (no bound) or at least 1s"},
		{"negative bytes", "urls: [\"amqp://h/\"]\nmax_length_bytes: -1", "max_length_bytes"},
		{"window", "urls: [\"amqp://h/\"]\nwindow: 0", "window and page"},
		{"max_lag", "urls: [\"amqp://h/\"]\nmax_lag: -5", "max_lag"},
		{"snapshot_interval default within max_age", "urls: [\"amqp://h/\"]\nmax_age: 1h", ""},
		{"snapshot_interval beyond max_age", "urls: [\"amqp://h/\"]\nmax_age: 1h\nsnapshot_interval: 40m", "snapshot_interval"},
		{"snapshot_interval never", "urls: [\"amqp://h/\"]\nsnapshot_interval: 0s", ""},
		{"snapshot part", "urls: [\"amqp://h/\"]\nsnapshot_part_bytes: 10", "snapshot_part_bytes"},
		{"unknown key", "urls: [\"amqp://h/\"]\nretention: 1h", "retention"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte("name: s\ntype: amqp-stream\n"+tc.conf), &n); err != nil {
				t.Fatal(err)
			}
			_, err := New(config.Publisher{Name: "s", Type: "amqp-stream", Node: n.Content[0]}, Settings{Name: "s", Node: n.Content[0]})
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
	if _, err := New(config.Publisher{Name: "x", Type: "kafka"}, Settings{Name: "x"}); err == nil || !strings.Contains(err.Error(), `unknown type "kafka"`) {
		t.Errorf("unknown type: %v", err)
	}
}
