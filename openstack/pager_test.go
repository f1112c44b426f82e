package openstack

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
)

// rawSession is a session on a plain HTTP server, without Keystone.
func rawSession(t *testing.T, h http.HandlerFunc) (*session, string) {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return &session{opts: Options{}.withDefaults(), log: discardLog(), pc: &gophercloud.ProviderClient{}}, ts.URL
}

// Links that go round in circles end the listing with an error instead of
// looping; a link to another host (a proxy's internal address) is followed
// on the endpoint's host.
func TestPagerLinks(t *testing.T) {
	var paths []string
	s, base := rawSession(t, func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.RequestURI())
		switch r.URL.Query().Get("marker") {
		case "":
			fmt.Fprint(w, `{"servers": [{"id": "a"}], "servers_links": [{"rel": "next", "href": "http://internal.example:8774/v2.1/servers/detail?marker=a"}]}`)
		case "a":
			// Same link again: a broken service.
			fmt.Fprint(w, `{"servers": [{"id": "b"}], "servers_links": [{"rel": "next", "href": "http://internal.example:8774/v2.1/servers/detail?marker=a"}]}`)
		}
	})
	ls := listSpec{service: "nova", what: "servers", url: base + "/v2.1/servers/detail", key: "servers", links: true, paged: true}
	n, err := s.list(context.Background(), ls, func(map[string]any, [16]byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "pagination does not end") || n != 2 {
		t.Fatalf("pages %d, err %v", n, err)
	}
	if len(paths) != 2 || paths[1] != "/v2.1/servers/detail?marker=a" {
		t.Errorf("requests %v", paths)
	}
}

func TestSameHost(t *testing.T) {
	base, _ := url.Parse("https://cloud.example.com:8774/v2.1/servers/detail?all_tenants=1")
	got, err := sameHost(base, "http://10.0.0.5:8774/v2.1/servers/detail?all_tenants=1&marker=x")
	if err != nil || got != "https://cloud.example.com:8774/v2.1/servers/detail?all_tenants=1&marker=x" {
		t.Errorf("got %s, %v", got, err)
	}
	got, _ = sameHost(base, "/v2.1/servers/detail?marker=y")
	if got != "https://cloud.example.com:8774/v2.1/servers/detail?marker=y" {
		t.Errorf("relative: %s", got)
	}
}

// decodePage reads items, the next link, and refuses broken pages.
func TestDecodePage(t *testing.T) {
	var ids, raws []string
	next := ""
	err := decodePage(strings.NewReader(`{"servers": [{"id": "a"}, {"id": "b", "x": [1]}], "other": {"x": [1]}, "servers_links": [{"href": "http://h/n?marker=b", "rel": "next"}]}`),
		"servers", func(o map[string]any, raw []byte) error {
			ids, raws = append(ids, str(o, "id")), append(raws, string(raw))
			return nil
		}, &next)
	if err != nil || strings.Join(ids, ",") != "a,b" || next != "http://h/n?marker=b" {
		t.Fatalf("ids %v next %q err %v", ids, next, err)
	}
	// Each item's own bytes, which its fingerprint is made of.
	if strings.Join(raws, "|") != `{"id": "a"}| {"id": "b", "x": [1]}` {
		t.Fatalf("raw items %q", raws)
	}
	for _, bad := range []string{
		`{"servers": [{"id": "a"}`, `{"servers": [null]}`, `{"servers": {}}`, `{"other": []}`, `[]`, `{"servers": []} x`,
	} {
		if err := decodePage(strings.NewReader(bad), "servers", func(map[string]any, []byte) error { return nil }, new(string)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
