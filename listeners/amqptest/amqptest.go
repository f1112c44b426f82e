// Package amqptest is what the tests of the bus path share, in the listener
// package and through the real binary: the local RabbitMQ that
// scripts/deps.d/rabbitmq.sh installs and starts (tests fail, never skip,
// when it is not there), broker object names no other run uses, a publisher
// with confirms as oslo.messaging's kombu producer publishes, and
// notifications stamped and wrapped as oslo.messaging's notifier sends them.
package amqptest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/openstack-synchronizer/synchronizer/oslo"
)

// Broker is the local RabbitMQ.
const Broker = "amqp://guest:guest@127.0.0.1:5672/"

var seq atomic.Int64

// Name returns a broker object name no other test run uses.
func Name(what string) string {
	return fmt.Sprintf("synctest-%s-%d-%d", what, os.Getpid(), seq.Add(1))
}

// Admin opens a channel to the shared broker on a connection of its own,
// closed after the test: a fresh one each time, because some tests close
// the connections of their virtual host.
func Admin(t testing.TB) *amqp.Channel {
	t.Helper()
	return AdminAt(t, Broker)
}

// AdminAt is Admin on another broker URL (a virtual host of the test's own,
// a private node).
func AdminAt(t testing.TB, url string) *amqp.Channel {
	t.Helper()
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("RabbitMQ is not reachable at %s (run scripts/deps.d/rabbitmq.sh): %v", redact(url), err)
	}
	t.Cleanup(func() { c.Close() })
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// DeleteQueueAfter deletes a queue when the test ends (cleanups run last in,
// first out: register it before starting what consumes the queue).
func DeleteQueueAfter(t testing.TB, name string) {
	t.Cleanup(func() {
		// Deleting a queue that is not there succeeds.
		if _, err := Admin(t).QueueDelete(name, false, false, false); err != nil {
			t.Errorf("delete queue %s: %v", name, err)
		}
	})
}

// DeleteExchangeAfter deletes an exchange when the test ends.
func DeleteExchangeAfter(t testing.TB, name string) {
	t.Cleanup(func() {
		if err := Admin(t).ExchangeDelete(name, false, false); err != nil {
			t.Errorf("delete exchange %s: %v", name, err)
		}
	})
}

// Publisher publishes persistent JSON messages with publisher confirms, on
// a connection of its own.
type Publisher struct {
	t    testing.TB
	url  string
	conn *amqp.Connection
	ch   *amqp.Channel
}

// NewPublisher connects a publisher to the shared broker, closed after the
// test.
func NewPublisher(t testing.TB) *Publisher {
	t.Helper()
	return NewPublisherAt(t, Broker)
}

// NewPublisherAt connects a publisher to url, closed after the test.
func NewPublisherAt(t testing.TB, url string) *Publisher {
	t.Helper()
	p := &Publisher{t: t, url: url}
	if err := p.Redial(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.conn.Close() })
	return p
}

// Redial replaces the publisher's connection (after the broker dropped it).
func (p *Publisher) Redial() error {
	c, err := amqp.Dial(p.url)
	if err != nil {
		return fmt.Errorf("publisher: dial: %w", err)
	}
	ch, err := c.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		c.Close()
		return fmt.Errorf("publisher: channel: %w", err)
	}
	if p.conn != nil {
		p.conn.Close()
	}
	p.conn, p.ch = c, ch
	return nil
}

// TryPublish publishes body to exchange with routing key key.
func (p *Publisher) TryPublish(exchange, key string, body []byte) (*amqp.DeferredConfirmation, error) {
	return p.ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, key, false, false,
		amqp.Publishing{ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: amqp.Persistent, Body: body})
}

// Publish is TryPublish failing the test on an error.
func (p *Publisher) Publish(exchange, key string, body []byte) *amqp.DeferredConfirmation {
	p.t.Helper()
	dc, err := p.TryPublish(exchange, key, body)
	if err != nil {
		p.t.Fatalf("publish to %s %s: %v", exchange, key, err)
	}
	return dc
}

// PublishWait publishes and waits for the broker's confirm.
func (p *Publisher) PublishWait(exchange, key string, body []byte) {
	p.t.Helper()
	if ok, err := p.Publish(exchange, key, body).WaitContext(context.Background()); !ok || err != nil {
		p.t.Fatalf("publish to %s %s not confirmed: %v", exchange, key, err)
	}
}

// Fixture reads an inner message from the oslo package's test data (the
// upstream notification samples), e.g. "nova-versioned/instance-create-end.json".
func Fixture(t testing.TB, rel string) map[string]any {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "..", "oslo", "testdata", rel))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Envelope stamps an inner message the way oslo.messaging's notifier and
// amqpdriver do (message_id, _unique_id, timestamp, priority, _context_*),
// keeps what the inner message sets itself (except the "metadata" some
// recorded samples carry, which an endpoint adds, not the wire) and wraps
// it in the 2.0 envelope.
func Envelope(t testing.TB, inner map[string]any, ts time.Time) []byte {
	t.Helper()
	n := seq.Add(1)
	m := map[string]any{
		"message_id":          fmt.Sprintf("00000000-0000-4000-8000-%012d", n),
		"_unique_id":          fmt.Sprintf("%032d", n),
		"timestamp":           oslo.FormatTime(ts),
		"priority":            "INFO",
		"publisher_id":        "nova-compute:compute",
		"_context_request_id": "req-5b6c791d-5709-4f36-8fbe-c3e02869e35d",
		"_context_project_id": "6f70656e737461636b20342065766572",
		"_context_is_admin":   true,
	}
	for k, v := range inner {
		if k != "metadata" {
			m[k] = v
		}
	}
	body, err := oslo.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return body
}
