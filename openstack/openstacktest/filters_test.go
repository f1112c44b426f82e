package openstacktest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// getH is get with request headers, returning the response headers too.
func getH(t *testing.T, u, tok string, hdr map[string]string) (int, http.Header, map[string]json.RawMessage) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("X-Auth-Token", tok)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, resp.Header, m
}

// items decodes a list member into id → object.
func items(t *testing.T, raw json.RawMessage) map[string]map[string]any {
	t.Helper()
	var l []map[string]any
	if err := json.Unmarshal(raw, &l); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	out := map[string]map[string]any{}
	for _, o := range l {
		out[o["id"].(string)] = o
	}
	return out
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Nova's changes-since lists what changed at or after T, deleted and
// soft-deleted servers included with their status, until archived; a plain
// listing shows neither; a tag-only change is invisible to it; Date is the
// cloud's clock.
func TestNovaChangesSince(t *testing.T) {
	s, tok := start(t, Options{PageSize: 100, ClockOffset: -time.Hour})
	ids := s.AddServers(4)
	base := s.URL + "/compute/v2.1/" + ProjectID + "/servers/detail?all_tenants=1"
	_, h, _ := getH(t, base, tok, nil)
	date, err := http.ParseTime(h.Get("Date"))
	if err != nil || time.Since(date) < 59*time.Minute || time.Since(date) > 61*time.Minute {
		t.Fatalf("Date %q is not the cloud's clock (an hour behind): %v", h.Get("Date"), err)
	}
	s.Advance(time.Minute)
	since := s.Now().Truncate(time.Second).Format(time.RFC3339)
	s.SetServerStatus(ids[0], "SHUTOFF")
	s.Remove(Servers, ids[1])
	s.SoftDelete(ids[2])
	s.UpdateQuiet(Servers, ids[3], func(o map[string]any) { o["tags"] = []any{"t"} })
	_, _, body := getH(t, base+"&changes-since="+url.QueryEscape(since), tok, nil)
	got := items(t, body["servers"])
	if !slices.Equal(keys(got), keys(map[string]map[string]any{ids[0]: nil, ids[1]: nil, ids[2]: nil})) {
		t.Fatalf("changes-since listed %v", keys(got))
	}
	for id, want := range map[string]string{ids[0]: "SHUTOFF", ids[1]: "DELETED", ids[2]: "SOFT_DELETED"} {
		if got[id]["status"] != want {
			t.Errorf("%s: status %v, want %s", id, got[id]["status"], want)
		}
	}
	if u, _ := got[ids[0]]["updated"].(string); u < since {
		t.Errorf("updated %q not moved to the cloud's clock (>= %s)", u, since)
	}
	_, _, body = getH(t, base, tok, nil)
	if all := items(t, body["servers"]); all[ids[1]] != nil || all[ids[2]] != nil || all[ids[3]]["tags"] == nil {
		t.Errorf("plain listing: %v", keys(all))
	}
	if code, _, _ := getH(t, base+"&changes-since=yesterday", tok, nil); code != http.StatusBadRequest {
		t.Errorf("bad changes-since: %d", code)
	}
	s.Archive()
	_, _, body = getH(t, base+"&changes-since="+url.QueryEscape(since), tok, nil)
	if got := items(t, body["servers"]); len(got) != 1 || got[ids[0]] == nil {
		t.Errorf("after archive: %v", keys(got))
	}
}

// Neutron refuses changed_since by default (filter_validation = true) and
// filters with it when told to accept it; fields=id projects.
func TestNeutronChangedSince(t *testing.T) {
	s, tok := start(t, Options{PageSize: 100})
	base := s.URL + "/network/v2.0/ports"
	s.Advance(time.Minute)
	since := s.Now().Truncate(time.Second).Format(time.RFC3339)
	id := s.IDs(Ports)[0]
	s.Update(Ports, id, func(o map[string]any) { o["status"] = "DOWN" })
	code, _, body := getH(t, base+"?changed_since="+url.QueryEscape(since), tok, nil)
	if code != http.StatusBadRequest || !strings.Contains(string(body["NeutronError"]), "['changed_since'] is invalid attribute for filtering") {
		t.Fatalf("default: %d %s", code, body["NeutronError"])
	}
	s.SetNeutronChangedSince(true)
	code, _, body = getH(t, base+"?changed_since="+url.QueryEscape(since), tok, nil)
	if got := items(t, body["ports"]); code != 200 || len(got) != 1 || got[id]["status"] != "DOWN" {
		t.Fatalf("accepted: %d %v", code, got)
	}
	_, _, body = getH(t, base+"?fields=id", tok, nil)
	got := items(t, body["ports"])
	if len(got) != len(s.IDs(Ports)) || len(got[id]) != 1 {
		t.Errorf("fields=id: %v", got)
	}
}

// Cinder filters on updated_at=gte: from 3.31 and ignores it below; its
// version document names the maximum; the summary list has id, name and
// links only; a microversion above the maximum gets 406.
func TestCinderUpdatedAt(t *testing.T) {
	s, tok := start(t, Options{PageSize: 100})
	ids := s.Add(Volumes, 2)
	base := s.URL + "/volumev3/v3/" + ProjectID
	_, _, body := getH(t, base[:strings.LastIndex(base, "/")+1], tok, nil)
	if !strings.Contains(string(body["versions"]), `"version":"3.70"`) {
		t.Fatalf("version document: %s", body["versions"])
	}
	s.Advance(time.Minute)
	since := s.Now().Truncate(time.Second).Format("2006-01-02T15:04:05")
	s.Update(Volumes, ids[0], func(o map[string]any) { o["status"] = "error" })
	filter := "/volumes/detail?all_tenants=1&updated_at=" + url.QueryEscape("gte:"+since)
	_, h, body := getH(t, base+filter, tok, map[string]string{"OpenStack-API-Version": "volume 3.60"})
	if got := items(t, body["volumes"]); len(got) != 1 || got[ids[0]]["status"] != "error" || h.Get("OpenStack-API-Version") != "volume 3.60" {
		t.Errorf("3.60: %v", keys(got))
	}
	_, _, body = getH(t, base+filter, tok, nil)
	if got := items(t, body["volumes"]); len(got) != 3 {
		t.Errorf("3.0 ignores the filter: got %v", keys(got))
	}
	_, _, body = getH(t, base+"/volumes?all_tenants=1", tok, map[string]string{"OpenStack-API-Version": "volume 3.60"})
	for id, o := range items(t, body["volumes"]) {
		if len(o) != 3 || o["links"] == nil {
			t.Errorf("summary of %s: %v", id, o)
		}
	}
	s.SetCinderMaxMicroversion("3.50")
	if code, _, _ := getH(t, base+filter, tok, map[string]string{"OpenStack-API-Version": "volume 3.60"}); code != http.StatusNotAcceptable {
		t.Errorf("above the maximum: %d", code)
	}
	if s.BytesServed(Volumes) == 0 || s.Requests(VolumeSummaries) != 1 {
		t.Errorf("bytes %d, summary requests %d", s.BytesServed(Volumes), s.Requests(VolumeSummaries))
	}
}
