package jsonvalue

import (
	"bytes"
	"encoding/json"
	"errors"
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
	// Decode stops after the value; anything but space after it is an
	// error, as for json.Unmarshal. (Not json.Unmarshal itself: without
	// UseNumber it refuses numbers beyond float64, like 1E700.)
	if !json.Valid(b) {
		return nil, errors.New("invalid JSON")
	}
	return v, nil
}

func checkSame(t *testing.T, name string, b []byte) {
	t.Helper()
	want, werr := stdDecode(b)
	got, gerr := Parse(b)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%s: encoding/json err %v, parser err %v", name, werr, gerr)
	}
	if gerr != nil && !errors.Is(gerr, ErrSyntax) {
		t.Fatalf("%s: error %v does not wrap ErrSyntax", name, gerr)
	}
	if werr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: parser gave %#v, encoding/json %#v", name, got, want)
	}
}

// The parser agrees with encoding/json on every upstream API and
// notification sample the collectors and the listener read, and on the
// inner messages of oslo envelopes (JSON inside a JSON string: escapes
// everywhere).
func TestParseFixtures(t *testing.T) {
	n := 0
	for _, dir := range []string{"../openstack/openstacktest/testdata", "../oslo/testdata"} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			checkSame(t, p, b)
			quoted, _ := json.Marshal(string(b))
			checkSame(t, p+" as a string", quoted)
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n < 20 {
		t.Fatalf("walked %d fixtures", n)
	}
}

var parseCases = []string{
	`{}`, `[]`, ` { "a" : [ 1 , -2.5e+3 , 0 , 1E-7 , true , false , null ] } `,
	`"plain"`, `"esc \" \\ \/ \b \f \n \r \t"`, `"\u00e9\u4e2d\ud83d\ude00"`, `"\ud800 lone"`,
	`"\ud800\u0041 broken pair"`, `"\udc00\ud800"`, `"\ud83d\ude00\ud83d"`, `"\uD83D\uDE00 upper"`,
	`"héllo wörld"`, "\"bad \xff utf8\"", "\"esc and bad \\n \xc3\x28 \xe2\x82\"", `{"\u006bey":"v","k\"q":1}`,
	`{"a":{"b":{"c":[{"d":[]}]}}}`, `{"dup":1,"dup":2}`, `[{"a":1},{"a":2,"b":3},{}]`,
	`-0`, `0.5`, `123456789012345678901234567890`, `1E700`, `[-1e-999]`,
	// invalid
	``, ` `, `{`, `[1,]`, `{"a":}`, `{"a" 1}`, `01`, `1.`, `.5`, `-`, `1e`, `tru`, `nul`, `"unterminated`,
	"\"ctl \x01\"", `{"a":1}}`, `[1 2]`, `{1:2}`, `"\x"`, `"\u12"`, `"\u12g4"`, `"\'"`, `"\`, `{"a":1,}`, `nan`,
	"\x00", `{"a":1 `, `[1`,
}

func TestParseCases(t *testing.T) {
	for _, c := range parseCases {
		checkSame(t, c, []byte(c))
	}
}

func TestParseDepth(t *testing.T) {
	deep := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	if _, err := Parse([]byte(deep)); err != nil {
		t.Fatalf("depth %d: %v", maxDepth, err)
	}
	deeper := "[" + deep + "]"
	if _, err := Parse([]byte(deeper)); !errors.Is(err, ErrSyntax) {
		t.Fatalf("depth %d: %v", maxDepth+1, err)
	}
}

// Members and Elements walk the outer levels; the values below them are
// the same as Parse's.
func TestMembersElements(t *testing.T) {
	p := NewParser([]byte(`{"items": [{"id": "a"}, {"id": "b", "n": 2}], "x": {"y": [1]}, "s": "t"}`))
	var ids []string
	rest := map[string]any{}
	err := p.Members(func(k string) error {
		if k != "items" {
			v, err := p.Value()
			rest[k] = v
			return err
		}
		return p.Elements(func() error {
			o, err := p.Object()
			if err == nil {
				ids = append(ids, o["id"].(string))
			}
			return err
		})
	})
	if err == nil {
		err = p.End()
	}
	want := map[string]any{"x": map[string]any{"y": []any{json.Number("1")}}, "s": "t"}
	if err != nil || strings.Join(ids, ",") != "a,b" || !reflect.DeepEqual(rest, want) {
		t.Fatalf("ids %v rest %v err %v", ids, rest, err)
	}
	for _, bad := range []string{`[]`, `{"items": {}}`, `{"items": [1]}`, `{"items": [{}]`, `{"items": []} x`} {
		p := NewParser([]byte(bad))
		err := p.Members(func(string) error {
			return p.Elements(func() error { _, err := p.Object(); return err })
		})
		if err == nil {
			err = p.End()
		}
		if !errors.Is(err, ErrSyntax) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range parseCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkSame(t, "fuzz", b) })
}

func BenchmarkParse(b *testing.B) {
	raw, err := os.ReadFile("../oslo/testdata/nova-versioned/instance-create-end.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		doc  []byte
	}{{"object", raw}, {"escaped", must(json.Marshal(string(raw)))}} {
		b.Run(c.name+"/jsonvalue", func(b *testing.B) {
			b.SetBytes(int64(len(c.doc)))
			for b.Loop() {
				if _, err := Parse(c.doc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/encoding-json", func(b *testing.B) {
			b.SetBytes(int64(len(c.doc)))
			for b.Loop() {
				var v any
				if err := json.Unmarshal(c.doc, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
