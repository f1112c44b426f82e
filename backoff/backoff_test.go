package backoff

import (
	"context"
	"slices"
	"testing"
	"time"
)

const ms = time.Millisecond

func TestDelay(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Policy
		want []time.Duration // after failures 1, 2, 3, ...
	}{
		{"doubles to the cap", Policy{Min: 100 * ms, Max: 500 * ms}, []time.Duration{100 * ms, 200 * ms, 400 * ms, 500 * ms, 500 * ms}},
		{"cap a power of two", Policy{Min: time.Second, Max: 4 * time.Second}, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}},
		{"max below min counts as min", Policy{Min: time.Minute, Max: 30 * time.Second}, []time.Duration{time.Minute, time.Minute, time.Minute}},
		{"max equal to min", Policy{Min: time.Second, Max: time.Second}, []time.Duration{time.Second, time.Second}},
		{"zero waits nothing", Policy{}, []time.Duration{0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []time.Duration
			for n := 1; n <= len(tc.want); n++ {
				got = append(got, tc.p.Delay(n))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDelayEdges(t *testing.T) {
	p := Policy{Min: time.Second, Max: time.Minute}
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{
		{-1, time.Second}, {0, time.Second}, {1, time.Second}, {7, time.Minute}, {1 << 30, time.Minute},
	} {
		if got := p.Delay(tc.n); got != tc.want {
			t.Errorf("Delay(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestJitter(t *testing.T) {
	p := Policy{Min: 400 * ms, Max: 30 * time.Second, Jitter: 0.25}
	for n := 1; n <= 4; n++ {
		base := Policy{Min: p.Min, Max: p.Max}.Delay(n)
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(n)
			if d < base || d > base+base/4 {
				t.Fatalf("Delay(%d) = %v, outside [%v, %v]", n, d, base, base+base/4)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("Delay(%d): no jitter in 200 draws", n)
		}
	}
}

func TestNextReset(t *testing.T) {
	b := New(10*ms, 40*ms)
	var got []time.Duration
	for _, step := range []string{"fail", "fail", "fail", "fail", "reset", "fail", "fail"} {
		if step == "reset" {
			b.Reset()
			continue
		}
		got = append(got, b.Next())
	}
	if want := []time.Duration{10 * ms, 20 * ms, 40 * ms, 40 * ms, 10 * ms, 20 * ms}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestWait(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want bool
	}{
		{"waits", context.Background(), ms, true},
		{"ctx ended", ended, time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			if got := Wait(tc.ctx, tc.d); got != tc.want {
				t.Errorf("Wait = %v, want %v", got, tc.want)
			}
			if el := time.Since(start); tc.want && el < tc.d || !tc.want && el > time.Second {
				t.Errorf("took %v", el)
			}
		})
	}
}
