package e2e

// The example alert rules and Grafana dashboard: promtool tests the rules
// (each alert fires on a series that should fire it and not on one that
// should not), and every metric the rules and the dashboard name must be
// served by the real binary's /metrics.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestAlertRules runs promtool (Debian's prometheus package, installed by
// scripts/deps.d/prometheus.sh): make test fails, never skips, without it.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatalf("promtool not found: run scripts/deps.d/prometheus.sh (make test does): %v", err)
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = filepath.Join("examples", "prometheus")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

var metricName = regexp.MustCompile(`\b((?:synchronizer|process|go)_[a-z0-9_]+)\b`)

// exprNames returns the metric names in PromQL expressions.
func exprNames(exprs []string) map[string]bool {
	names := map[string]bool{}
	for _, e := range exprs {
		for _, m := range metricName.FindAllStringSubmatch(e, -1) {
			names[m[1]] = true
		}
	}
	return names
}

func alertExprs(t *testing.T) []string {
	t.Helper()
	b := readFile(t, "examples/prometheus/alerts.yml")
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, r.Expr)
		}
	}
	return out
}

// dashboardExprs walks the dashboard JSON for every "expr" and query.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b := readFile(t, "examples/grafana/synchronizer.json")
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if s, ok := c.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					out = append(out, s)
				}
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(doc)
	return out
}

// TestDashboardAndAlertMetricsExist starts the real binary with a metrics
// endpoint, a static collector, a bus listener (failing: nothing listens on
// its port) and a mass delete held by the brake, so that every family has
// a sample, and checks that every metric the alert rules and the dashboard
// name is on /metrics.
func TestDashboardAndAlertMetricsExist(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	topo := filepath.Join(dir, "topology.yaml")
	copyFile(t, "examples/topology.yaml", topo)
	addr := freeAddr(t)
	deadAddr := freeAddr(t)
	s := startSidecar(t, dir, "metrics: {listen: \""+addr+"\"}\n"+
		"collectors:\n  - {name: topology, type: static, path: topology.yaml, interval: 1h}\n"+
		"listeners:\n  - {name: bus, type: amqp, urls: [\"amqp://guest:guest@"+deadAddr+"/\"], queue: synchronizer-alerts-test-"+filepath.Base(dir)+"}\n")
	waitFor(t, "first poll", 10*time.Second, func() bool { return statusOf(t, s).Entities == 11 })
	// All three ports go from the topology: more than half, held.
	b, _ := os.ReadFile(topo)
	var doc map[string]any
	yaml.Unmarshal(b, &doc)
	defs := doc["definitions"].(map[string]any)
	var kept []any
	ports := map[any]bool{}
	for _, e := range defs["entities"].([]any) {
		if em := e.(map[string]any); em["type"] == "neutron.port" {
			ports[em["static_id"]] = true
		} else {
			kept = append(kept, e)
		}
	}
	defs["entities"] = kept
	var rels []any
	for _, r := range defs["relationships"].([]any) {
		if rm := r.(map[string]any); !ports[rm["source"]] && !ports[rm["target"]] {
			rels = append(rels, r)
		}
	}
	defs["relationships"] = rels
	nb, _ := yaml.Marshal(doc)
	os.WriteFile(topo, nb, 0o644)
	// One listing holds them; the next (in an hour) would confirm them.
	if out, err := s.cli("collect", "topology"); err != nil || !strings.Contains(out, `"held"`) {
		t.Fatalf("collect: %v\n%s", err, out)
	}
	// A reload, for the reload counter's first sample.
	s.cmd.Process.Signal(syscall.SIGHUP)
	var out string
	waitFor(t, "held deletes and a reload on /metrics", 10*time.Second, func() bool {
		out = scrape(t, addr)
		return strings.Contains(out, "\nsynchronizer_held_deletes{") && strings.Contains(out, "\nsynchronizer_config_reloads_total{")
	})
	served := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		served[name] = true
	}
	for what, exprs := range map[string][]string{"alerts.yml": alertExprs(t), "synchronizer.json": dashboardExprs(t)} {
		names := exprNames(exprs)
		if len(names) < 5 {
			t.Fatalf("%s: only %d metric names found in %d expressions", what, len(names), len(exprs))
		}
		var missing []string
		for n := range names {
			if !served[n] {
				missing = append(missing, n)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("%s names metrics the binary does not serve: %v", what, missing)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", out)
	}
}
