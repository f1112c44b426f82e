package openstack

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/gophercloud/gophercloud/v2/openstack/utils"
)

// novaLadder are the microversions stepped down to when Nova refuses one
// without saying its maximum: 2.96 (pinned_availability_zone), 2.88
// (hypervisor uptime in the body), 2.53 (UUID ids of services and
// hypervisors), 2.47 (flavor object in servers), 2.1.
var novaLadder = []string{"2.96", "2.88", "2.53", "2.47", "2.1"}

var novaMaxRE = regexp.MustCompile(`maximum is (2\.\d+)`)

// nova negotiates the compute microversion once and lowers it when Nova
// answers 406 Not Acceptable, which it does for a microversion above its
// maximum.
type nova struct {
	s    *session
	want string

	negMu sync.Mutex // one negotiation at a time
	mu    sync.Mutex
	mv    string // "" until negotiated
	neg   bool
}

// negotiate reads the version document at the versioned root of the compute
// endpoint (GET /v2.1/) and picks min(want, the cloud's maximum). Without a
// usable document it keeps want and relies on the 406 fall-back.
func (n *nova) negotiate(ctx context.Context, endpoint string) {
	n.negMu.Lock()
	defer n.negMu.Unlock()
	n.mu.Lock()
	done := n.neg
	n.mu.Unlock()
	if done {
		return
	}
	mv := n.want
	root, err := utils.BaseVersionedEndpoint(endpoint)
	if err == nil {
		var doc struct {
			Version struct {
				Version    string `json:"version"`
				MinVersion string `json:"min_version"`
			} `json:"version"`
		}
		err = n.s.get(ctx, root, nil, 1, func(r io.Reader) error { return json.NewDecoder(r).Decode(&doc) })
		if max := doc.Version.Version; err == nil && minorOf(max) >= 1 && minorOf(max) < minorOf(mv) {
			mv = max
		}
	}
	if err != nil {
		n.s.log.Debug("nova version document unavailable, trying the wanted microversion", "microversion", mv, "err", err)
	}
	n.mu.Lock()
	if !n.neg {
		n.mv, n.neg = mv, true
	}
	n.mu.Unlock()
}

// microversion is the one in use.
func (n *nova) microversion() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mv
}

// hypervisorMaxMinor is the highest microversion hypervisors are listed at.
// From 2.88 on, every os-hypervisors/detail makes nova-api ask each
// nova-compute for its uptime over RPC, at every poll, for a field that is
// dropped as volatile (DefaultVolatile) anyway.
const hypervisorMaxMinor = 87

// hypervisorOnlyFields are the hypervisor fields 2.88 removed: listed at
// 2.87 in place of a higher negotiated microversion, they are dropped, so
// that a host looks as it would at the negotiated one.
var hypervisorOnlyFields = []string{"vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used",
	"free_ram_mb", "free_disk_gb", "current_workload", "running_vms", "disk_available_least", "cpu_info"}

// capped is the microversion in use, lowered to 2.maxMinor (maxMinor 0:
// not lowered).
func (n *nova) capped(maxMinor int) string {
	mv := n.microversion()
	if maxMinor > 0 && minorOf(mv) > maxMinor {
		return "2." + strconv.Itoa(maxMinor)
	}
	return mv
}

func (n *nova) header() map[string]string { return mvHeader(n.microversion()) }

func mvHeader(mv string) map[string]string {
	if mv == "" {
		return nil
	}
	return map[string]string{
		"OpenStack-API-Version":        "compute " + mv,
		"X-OpenStack-Nova-API-Version": mv,
	}
}

// fallback lowers the microversion after a 406 to a request made with the
// headers used, and reports whether the request is worth repeating.
func (n *nova) fallback(err error, used map[string]string) bool {
	return n.fallbackFrom(err, used, 0)
}

// fallbackFrom is fallback for a listing made at most at 2.maxMinor (0: at
// the microversion in use).
func (n *nova) fallbackFrom(err error, used map[string]string, maxMinor int) bool {
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusNotAcceptable {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	cur := n.mv
	if maxMinor > 0 && minorOf(cur) > maxMinor {
		cur = "2." + strconv.Itoa(maxMinor)
	}
	if u := used["X-OpenStack-Nova-API-Version"]; u != "" && u != cur {
		return true // a concurrent listing has lowered it already
	}
	next := ""
	if m := novaMaxRE.FindStringSubmatch(he.Message); m != nil && minorOf(m[1]) < minorOf(cur) {
		next = m[1]
	} else {
		for _, v := range novaLadder {
			if minorOf(v) < minorOf(cur) {
				next = v
				break
			}
		}
	}
	if next == "" {
		return false
	}
	n.s.log.Info("nova refused microversion, falling back", "microversion", cur, "fallback", next)
	n.mv = next
	return true
}

// spec is a listing of a compute collection at the negotiated microversion.
func (n *nova) spec(endpoint, path, key string, paged bool, query ...string) listSpec {
	return listSpec{
		service: "nova", what: key,
		url: withQuery(endpoint+path, query...), key: key,
		links: paged, paged: paged,
		header: n.header, retryPage: n.fallback,
	}
}

// specMax is spec at most at 2.maxMinor.
func (n *nova) specMax(endpoint, path, key string, paged bool, maxMinor int, query ...string) listSpec {
	ls := n.spec(endpoint, path, key, paged, query...)
	ls.header = func() map[string]string { return mvHeader(n.capped(maxMinor)) }
	ls.retryPage = func(err error, used map[string]string) bool { return n.fallbackFrom(err, used, maxMinor) }
	return ls
}

// minorOf returns N of a "2.N" microversion, -1 when malformed.
func minorOf(v string) int {
	maj, min, ok := strings.Cut(v, ".")
	if !ok || maj != "2" {
		return -1
	}
	i, err := strconv.Atoi(min)
	if err != nil || i < 0 {
		return -1
	}
	return i
}
