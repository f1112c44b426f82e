package sidecar

import (
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
)

// TestCollectorTrafficMetrics: an openstack collector's requests and
// response bytes are counters per collector, equal to what the cloud served.
func TestCollectorTrafficMetrics(t *testing.T) {
	srv, err := openstacktest.New(openstacktest.Options{PageSize: 100, Password: "pw-metrics-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "clouds.yaml"), srv.CloudsYAML("test", "pw-metrics-1"))
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, header(dir)+`metrics: {listen: "127.0.0.1:0"}
collectors:
  - {name: cloud, type: openstack, cloud: test, clouds_file: clouds.yaml, interval: 1h, types: [nova.instance]}
`)
	h := startAt(t, dir, path)
	waitFor(t, "first poll", 10*time.Second, func() bool {
		c, _ := h.status().unit("cloud")
		return c.Polls == 1
	})
	m := regexp.MustCompile(`msg="metrics endpoint listening" .*addr=(\S+)`).FindStringSubmatch(h.log.String())
	if m == nil {
		t.Fatalf("no metrics address in the log\n%s", h.log)
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	value := func(name string) int64 {
		v := regexp.MustCompile(name + `\{collector="cloud"\} (\S+)`).FindSubmatch(b)
		if v == nil {
			t.Fatalf("no %s in\n%s", name, b)
		}
		f, _ := strconv.ParseFloat(string(v[1]), 64)
		return int64(f)
	}
	// Nova's version document and the one page of servers.
	if got, want := value("synchronizer_collector_requests_total"), int64(srv.Requests("versions")+srv.Requests(openstacktest.Servers)); got != want || want != 2 {
		t.Errorf("requests %d, the cloud served %d", got, want)
	}
	if got, want := value("synchronizer_collector_response_bytes_total"), srv.BytesServed("versions")+srv.BytesServed(openstacktest.Servers); got != want {
		t.Errorf("bytes %d, the cloud served %d", got, want)
	}
}
