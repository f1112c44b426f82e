package listeners

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/openstack-synchronizer/synchronizer/config"
)

// AMQPTLS is the tls: section of an amqp listener, for other AMQP clients of
// the sidecar (publishers) that take the same settings.
type AMQPTLS = amqpTLS

// AMQPBroker holds the settings of the connection to the broker that every
// AMQP client of the sidecar takes (the amqp listener, the amqp-stream
// publisher): their config structs embed it with `yaml:",inline"`.
type AMQPBroker struct {
	URLs       []string        `yaml:"urls"`
	VHost      string          `yaml:"vhost"`
	TLS        *AMQPTLS        `yaml:"tls"`
	MinBackoff config.Duration `yaml:"min_backoff"`
	MaxBackoff config.Duration `yaml:"max_backoff"`
	Heartbeat  config.Duration `yaml:"heartbeat"`
}

// DefaultAMQPBroker is AMQPBroker with its defaults: the back-off bounds
// and the heartbeat (urls: has none).
func DefaultAMQPBroker() AMQPBroker {
	return AMQPBroker{
		MinBackoff: config.Duration(100 * time.Millisecond),
		MaxBackoff: config.Duration(30 * time.Second),
		Heartbeat:  config.Duration(10 * time.Second),
	}
}

// Dial connects to u, one of AMQPEndpoints' (tc is its TLS config), under
// the connection name the broker's management UI shows.
func (b *AMQPBroker) Dial(u string, tc *tls.Config, name string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	return amqp.DialConfig(u, amqp.Config{
		Vhost:           b.VHost,
		TLSClientConfig: tc,
		Heartbeat:       b.Heartbeat.D(),
		Properties:      props,
	})
}

// AMQPEndpoints turns urls: (oslo's rabbit:// and multi-host forms too) and
// tls: into one dialable URL per host, the host:port of each for logs, and
// the TLS config (nil without tls:). Its error names every bad entry
// ("tls: …", "urls[i]: …"), as check-config shows them; it never contains
// credentials.
func AMQPEndpoints(urls []string, t *AMQPTLS, dir string) (dial, hosts []string, tc *tls.Config, err error) {
	var errs []error
	if t != nil {
		if tc, err = loadTLS(t, dir); err != nil {
			errs = append(errs, fmt.Errorf("tls: %w", err))
		}
	}
	for i, raw := range urls {
		for _, u := range splitHosts(raw) {
			norm, host, err := normalizeURL(u, t != nil)
			if err != nil {
				errs = append(errs, fmt.Errorf("urls[%d]: %w", i, err))
				continue
			}
			dial = append(dial, norm)
			hosts = append(hosts, host)
		}
	}
	return dial, hosts, tc, errors.Join(errs...)
}
