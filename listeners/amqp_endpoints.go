package listeners

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
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
// the connection name the broker's management UI shows. The end of ctx
// ends the attempt: a broker that accepts TCP and never answers would
// otherwise hold a shutdown or a reload for the 30 s handshake time-out.
func (b *AMQPBroker) Dial(ctx context.Context, u string, tc *tls.Config, name string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	var closeOnCancel func() bool
	conn, err := amqp.DialConfig(u, amqp.Config{
		Vhost:           b.VHost,
		TLSClientConfig: tc,
		Heartbeat:       b.Heartbeat.D(),
		Properties:      props,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: dialTimeout}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// As amqp.DefaultDial: the handshake has a deadline, which
			// the library clears once open.
			if err := c.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
				c.Close()
				return nil, err
			}
			closeOnCancel = context.AfterFunc(ctx, func() { c.Close() })
			return c, nil
		},
	})
	if closeOnCancel != nil {
		closeOnCancel() // the session closes the connection from now on
	}
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return conn, err
}

// dialTimeout bounds the TCP connect and the AMQP handshake, as the
// library's default does.
const dialTimeout = 30 * time.Second

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
