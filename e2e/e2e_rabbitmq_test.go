package e2e

// The bus listener and the real broker's refusals. The RabbitMQ user,
// vhost and permissions docs/operations.md tells the operator to create
// are enough for the listener to declare its queue, bind it to the
// OpenStack exchanges and consume; one permission less and the broker
// refuses. A listener refused or unable to connect is failing, and says
// why.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
)

// The permissions of docs/operations.md ("RabbitMQ").
const (
	permConfigure = `^(synchronizer\..*|nova|neutron|cinder|heat|openstack)$`
	permWrite     = `^synchronizer\..*$`
	permRead      = `^(synchronizer\..*|nova|neutron|cinder|heat|openstack)$`
)

func rabbitmqctl(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("rabbitmqctl", args...).CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// brokerUser creates a vhost of its own and a user with the given
// permissions on it (guest may publish there), removed after the test.
func brokerUser(t *testing.T, configure, write, read string) (vhost, user, password string) {
	t.Helper()
	amqptest.Admin(t) // fails clearly when the broker is not there
	vhost, user, password = amqptest.Name("vhost"), amqptest.Name("user"), "pw-"+amqptest.Name("p")
	rabbitmqctl(t, "add_vhost", vhost)
	t.Cleanup(func() { exec.Command("rabbitmqctl", "delete_vhost", vhost).Run() })
	rabbitmqctl(t, "add_user", user, password)
	t.Cleanup(func() { exec.Command("rabbitmqctl", "delete_user", user).Run() })
	rabbitmqctl(t, "set_permissions", "-p", vhost, user, configure, write, read)
	rabbitmqctl(t, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	return vhost, user, password
}

func TestRabbitMQPermissions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                   string
		configure, write, read string
		refused                string // "" when the listener must work
	}{
		{"documented", permConfigure, permWrite, permRead, ""},
		{"no configure on the exchanges", permWrite, permWrite, permRead, "ACCESS_REFUSED"},
		{"no read on the exchanges", permConfigure, permWrite, permWrite, "ACCESS_REFUSED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vhost, user, password := brokerUser(t, tc.configure, tc.write, tc.read)
			u := "amqp://" + user + ":" + password + "@127.0.0.1:5672/" + url.PathEscape(vhost)
			s := startSidecar(t, "", "listeners:\n  - {name: bus, type: amqp, urls: [\""+u+"\"], min_backoff: 20ms}\n")
			c := s.client()
			if tc.refused != "" {
				waitFor(t, "the broker's refusal", 20*time.Second, func() bool {
					d, err := tryListenerDetails(c)
					return err == nil && strings.Contains(strings.ToUpper(fmt.Sprint(d["last_error"])), tc.refused)
				})
				if strings.Contains(s.log.String(), password) {
					t.Errorf("the password is in the log")
				}
				return
			}
			waitConnected(t, c)
			// guest publishes as Nova's notifier would, on the same vhost.
			conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/" + url.PathEscape(vhost))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ch, err := conn.Channel()
			if err != nil {
				t.Fatal(err)
			}
			body := busEnvelope(t, amqptest.Fixture(t, "nova-versioned/instance-create-end.json"), "", "", time.Now())
			if err := ch.PublishWithContext(context.Background(), "nova", "versioned_notifications.info", false, false,
				amqp.Publishing{ContentType: "application/json", Body: body}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the instance from the bus", 10*time.Second, func() bool {
				out, _ := s.cli("get-all")
				return strings.Contains(out, `"key": "nova.instance:`+busInstance+`"`)
			})
		})
	}
}

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
				_, metrics = httpGet("http://" + addr + "/metrics")
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
