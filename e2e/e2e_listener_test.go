package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestListenerDownIsFailing: a bus listener that the broker refuses, or
// cannot reach, is failing in status and in synchronizer_unit_failing, and
// its log line says what failed; no password shows anywhere.
func TestListenerDownIsFailing(t *testing.T) {
	t.Parallel()
	const secret = "Wr0ng-s3cret"
	cases := []struct {
		name, url, logs string
	}{
		{"wrong password", "amqp://guest:" + secret + "@127.0.0.1:5672/", "amqp authentication refused"},
		{"nothing listens", "amqp://guest:" + secret + "@127.0.0.1:1/", "amqp cannot connect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := freeAddr(t)
			s := startSidecar(t, "", "metrics: {listen: \""+addr+"\"}\ncollectors: []\nlisteners:\n"+
				"  - {name: bus, type: amqp, urls: [\""+tc.url+"\"], queue: q-down-"+strconv.Itoa(os.Getpid())+"}\n")
			defer s.stop()
			var st struct {
				Listeners []struct {
					Name, State string
					LastError   string `json:"last_error"`
				} `json:"listeners"`
			}
			var out string
			waitFor(t, "the listener failing in status", 30*time.Second, func() bool {
				out, _ = s.cli("status")
				json.Unmarshal([]byte(out), &st)
				return len(st.Listeners) == 1 && st.Listeners[0].State == "failing"
			})
			if !strings.HasPrefix(st.Listeners[0].LastError, strings.TrimPrefix(tc.logs, "amqp ")) {
				t.Errorf("last_error %q does not say %q", st.Listeners[0].LastError, tc.logs)
			}
			var metrics string
			waitFor(t, "the metric", 10*time.Second, func() bool {
				resp, err := http.Get("http://" + addr + "/metrics")
				if err != nil {
					return false
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				metrics = string(b)
				return strings.Contains(metrics, `synchronizer_unit_failing{kind="listener",name="bus"} 1`)
			})
			waitFor(t, "the log line", 10*time.Second, func() bool {
				return strings.Contains(s.log.String(), tc.logs)
			})
			for what, text := range map[string]string{"status": out, "metrics": metrics, "log": s.log.String()} {
				if strings.Contains(text, secret) {
					t.Errorf("%s shows the password", what)
				}
			}
		})
	}
}
