package openstack

import (
	"encoding/json"
	"errors"
	"html"
	"net/url"
	"strings"
	"testing"
)

// A secret comes back from services and libraries in many encodings: each
// one is redacted, not only the raw form (a password with <, & or > leaked
// in Go's JSON-escaped form).
func TestRedactEncodedForms(t *testing.T) {
	goJSON := func(s string, escapeHTML bool) string {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(escapeHTML)
		_ = enc.Encode(s)
		return strings.TrimSuffix(strings.TrimSpace(b.String()), `"`)[1:]
	}
	const (
		markup  = `p<a&s>s"w\rd`
		unicode = `mot de passé+100%`
	)
	cases := []struct {
		name, secret, shown string
	}{
		{"raw", markup, markup},
		{"Go JSON", markup, goJSON(markup, true)},
		{"Go JSON, upper-case hex", markup, strings.ReplaceAll(strings.ReplaceAll(goJSON(markup, true), `\u003c`, `\u003C`), `\u003e`, `\u003E`)},
		{"Go JSON without HTML escaping", markup, goJSON(markup, false)},
		{"JSON in JSON (Python)", markup, `p<a&s>s\\\"w\\\\rd`},
		{"query", markup, url.QueryEscape(markup)},
		{"path", markup, url.PathEscape(markup)},
		{"query, lower-case hex", markup, "p%3ca%26s%3es%22w%5crd"},
		{"HTML", markup, html.EscapeString(markup)},
		{"Python JSON (ASCII only)", unicode, `mot de pass\u00e9+100%`},
		{"Python JSON in JSON", unicode, `mot de pass\\u00e9+100%`},
		{"Python quote", unicode, "mot%20de%20pass%C3%A9%2B100%25"},
		{"Python quote_plus", unicode, "mot+de+pass%C3%A9%2B100%25"},
		{"Go JSON of non-ASCII", unicode, goJSON(unicode, true)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := redactWith(errors.New("login failed for {"+tc.shown+"} at x"), []string{tc.secret})
			if strings.Contains(err.Error(), tc.shown) {
				t.Errorf("%q shown in %q", tc.shown, err)
			}
			if !strings.Contains(err.Error(), "{***}") {
				t.Errorf("not replaced whole: %q", err)
			}
		})
	}
}
