package openstack

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// stdDecode is the reference: encoding/json with UseNumber.
func stdDecode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errJSON
	}
	// Decode stops after the value; anything but space after it is an
	// error, as for json.Unmarshal.
	if err := json.Unmarshal(b, new(any)); err != nil {
		return nil, err
	}
	return v, nil
}

func checkSame(t *testing.T, name string, b []byte) {
	t.Helper()
	want, werr := stdDecode(b)
	got, gerr := parseJSON(b)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%s: encoding/json err %v, parser err %v", name, werr, gerr)
	}
	if werr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: parser gave %#v, encoding/json %#v", name, got, want)
	}
}

// The parser agrees with encoding/json on every upstream fixture.
func TestParseFixtures(t *testing.T) {
	n := 0
	err := filepath.WalkDir("openstacktest/testdata", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		checkSame(t, p, b)
		n++
		return nil
	})
	if err != nil || n < 9 {
		t.Fatalf("walked %d fixtures: %v", n, err)
	}
}

var parseCases = []string{
	`{}`, `[]`, ` { "a" : [ 1 , -2.5e+3 , 0 , 1E-7 , true , false , null ] } `,
	`"plain"`, `"esc \" \\ \/ \b \f \n \r \t"`, `"\u00e9\u4e2d\ud83d\ude00"`, `"\ud800 lone"`,
	`"héllo wörld"`, "\"bad \xff utf8\"", `{"a":{"b":{"c":[{"d":[]}]}}}`, `{"dup":1,"dup":2}`,
	`-0`, `0.5`, `123456789012345678901234567890`,
	// invalid
	``, `{`, `[1,]`, `{"a":}`, `{"a" 1}`, `01`, `1.`, `.5`, `-`, `1e`, `tru`, `nul`, `"unterminated`,
	"\"ctl \x01\"", `{"a":1}}`, `[1 2]`, `{1:2}`, `"\x"`, `"\u12"`, `{"a":1,}`, `nan`,
}

func TestParseCases(t *testing.T) {
	for _, c := range parseCases {
		checkSame(t, c, []byte(c))
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range parseCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkSame(t, "fuzz", b) })
}

// decodePage reads items, the next link, and refuses broken pages.
func TestDecodePage(t *testing.T) {
	var ids []string
	next := ""
	err := decodePage(strings.NewReader(`{"servers": [{"id": "a"}, {"id": "b"}], "other": {"x": [1]}, "servers_links": [{"href": "http://h/n?marker=b", "rel": "next"}]}`),
		"servers", func(o map[string]any) error { ids = append(ids, str(o, "id")); return nil }, &next)
	if err != nil || strings.Join(ids, ",") != "a,b" || next != "http://h/n?marker=b" {
		t.Fatalf("ids %v next %q err %v", ids, next, err)
	}
	for _, bad := range []string{
		`{"servers": [{"id": "a"}`, `{"servers": [null]}`, `{"servers": {}}`, `{"other": []}`, `[]`, `{"servers": []} x`,
	} {
		if err := decodePage(strings.NewReader(bad), "servers", func(map[string]any) error { return nil }, new(string)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
