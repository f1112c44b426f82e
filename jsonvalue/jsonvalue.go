// Package jsonvalue parses JSON into the generic values encoding/json
// produces with UseNumber (map[string]any, []any, string, json.Number, bool,
// nil), several times faster.
//
// encoding/json's decoding into interfaces validates every document in a
// first pass and then walks it again through reflection: it was the bulk of
// a poll's CPU (about 40 µs per Nova server) and of a bus notification's
// (its envelope carries the message as a JSON string, decoded twice). This
// parser makes one pass, interns object keys (they repeat in every item of
// a page) and sizes maps from the previous object at the same depth.
// Results are identical to encoding/json's, escapes and invalid UTF-8
// included (tested differentially, fuzzing included); invalid input is an
// error wrapping ErrSyntax.
package jsonvalue

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrSyntax is wrapped by every error of invalid input.
var ErrSyntax = errors.New("invalid JSON")

// maxDepth bounds nesting, as encoding/json does.
const maxDepth = 10000

// Parser reads one JSON document. Besides Parse, it lets a caller walk the
// outer levels itself (Members, Elements) to handle items one at a time.
type Parser struct {
	b     []byte
	i     int
	depth int
	keys  map[string]string
	// hint is the size of the last object seen at each depth: items of a
	// page have the same shape, so their maps are allocated once at size.
	hint [8]int
}

// NewParser returns a parser of b. The values it returns do not alias b.
func NewParser(b []byte) *Parser {
	return &Parser{b: b, keys: make(map[string]string, 64)}
}

// Parse parses a whole document.
func Parse(b []byte) (any, error) { return whole(b, (*Parser).Value) }

// ParseObject parses a whole document that must be an object.
func ParseObject(b []byte) (map[string]any, error) { return whole(b, (*Parser).Object) }

// whole parses b with read and checks that nothing follows.
func whole[T any](b []byte, read func(*Parser) (T, error)) (T, error) {
	var zero T
	p := NewParser(b)
	v, err := read(p)
	if err != nil {
		return zero, err
	}
	if err := p.End(); err != nil {
		return zero, err
	}
	return v, nil
}

// Fail returns a syntax error at the current offset.
func (p *Parser) Fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrSyntax, what, p.i)
}

// Offset is the position in the document the parser has reached: the
// bytes of a value are those between the offsets before and after it.
func (p *Parser) Offset() int { return p.i }

// End checks that only white space follows.
func (p *Parser) End() error {
	p.ws()
	if p.i != len(p.b) {
		return p.Fail("data after the value")
	}
	return nil
}

func (p *Parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte (0 at the end).
func (p *Parser) peek() byte {
	p.ws()
	if p.i >= len(p.b) {
		return 0
	}
	return p.b[p.i]
}

// Value parses the value at the current position.
func (p *Parser) Value() (any, error) {
	switch c := p.peek(); {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.str(false)
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	case c == 0 && p.i >= len(p.b):
		return nil, p.Fail("unexpected end")
	}
	return nil, p.Fail("unexpected character")
}

// Object parses the object at the current position.
func (p *Parser) Object() (map[string]any, error) {
	if p.peek() != '{' {
		return nil, p.Fail("expected an object")
	}
	return p.object()
}

// Members walks the object at the current position: fn is called with each
// key and must consume its value (Value, Object, Members, Elements...).
func (p *Parser) Members(fn func(key string) error) error {
	if p.peek() != '{' {
		return p.Fail("expected an object")
	}
	return p.container('}', fn)
}

// Elements walks the array at the current position: fn is called for each
// element and must consume it.
func (p *Parser) Elements(fn func() error) error {
	if p.peek() != '[' {
		return p.Fail("expected an array")
	}
	return p.container(']', func(string) error { return fn() })
}

func (p *Parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.Fail("nesting too deep")
	}
	return nil
}

func (p *Parser) literal(lit string) error {
	if len(p.b)-p.i < len(lit) || string(p.b[p.i:p.i+len(lit)]) != lit {
		return p.Fail("invalid literal")
	}
	p.i += len(lit)
	return nil
}

// container parses the object or the array whose '{' or '[' is at the
// current position (end is the '}' or ']' that closes it): fn is called
// with each member's key, or with "" for each element, and must consume
// the value. Objects and arrays differ only in the keys.
func (p *Parser) container(end byte, fn func(k string) error) error {
	if err := p.enter(); err != nil {
		return err
	}
	defer func() { p.depth-- }()
	p.i++ // { or [
	if p.peek() == end {
		p.i++
		return nil
	}
	for {
		var k string
		if end == '}' {
			var err error
			if k, err = p.key(); err != nil {
				return err
			}
		}
		if err := fn(k); err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.i++
		case end:
			p.i++
			return nil
		default:
			if p.i < len(p.b) {
				return p.Fail("expected ',' or '" + string(end) + "'")
			}
			if end == '}' {
				return p.Fail("unexpected end in object")
			}
			return p.Fail("unexpected end in array")
		}
	}
}

// key reads an object member's key and the ':' after it.
func (p *Parser) key() (string, error) {
	if p.peek() != '"' {
		return "", p.Fail("expected object key")
	}
	k, err := p.str(true)
	if err != nil {
		return "", err
	}
	if p.peek() != ':' {
		return "", p.Fail("expected ':'")
	}
	p.i++
	return k, nil
}

func (p *Parser) object() (map[string]any, error) {
	d := p.depth
	var m map[string]any
	if d < len(p.hint) {
		m = make(map[string]any, p.hint[d])
	} else {
		m = map[string]any{}
	}
	err := p.container('}', func(k string) error {
		v, err := p.Value()
		m[k] = v
		return err
	})
	if err != nil {
		return nil, err
	}
	if d < len(p.hint) {
		p.hint[d] = len(m)
	}
	return m, nil
}

func (p *Parser) array() ([]any, error) {
	a := []any{}
	err := p.container(']', func(string) error {
		v, err := p.Value()
		a = append(a, v)
		return err
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// str parses a string. Strings of plain ASCII without escapes (nearly all)
// are sliced directly; the rest are decoded by escaped.
func (p *Parser) str(intern bool) (string, error) {
	start := p.i
	p.i++ // "
	for ; p.i < len(p.b); p.i++ {
		c := p.b[p.i]
		if c == '"' {
			raw := p.b[start+1 : p.i]
			p.i++
			if !intern {
				return string(raw), nil
			}
			if s, ok := p.keys[string(raw)]; ok {
				return s, nil
			}
			s := string(raw)
			p.keys[s] = s
			return s, nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return p.escaped(start)
		}
	}
	return "", p.Fail("unterminated string")
}

// escaped decodes the rest of a string from the current position the way
// encoding/json does: its escapes only; lone or broken surrogates and
// invalid UTF-8 bytes each become U+FFFD.
func (p *Parser) escaped(start int) (string, error) {
	s := p.b
	b := make([]byte, 0, 2*(p.i-start)+64)
	b = append(b, s[start+1:p.i]...)
	for r := p.i; r < len(s); {
		c := s[r]
		switch {
		case c == '"':
			p.i = r + 1
			return string(b), nil
		case c == '\\':
			if r+1 >= len(s) {
				p.i = r
				return "", p.Fail("unterminated string")
			}
			switch e := s[r+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				rr := getu4(s[r:])
				if rr < 0 {
					p.i = r
					return "", p.Fail("invalid \\u escape")
				}
				r += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != unicode.ReplacementChar {
						r += 6
						b = utf8.AppendRune(b, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
				continue
			default:
				p.i = r
				return "", p.Fail("invalid escape")
			}
			r += 2
		case c < 0x20:
			p.i = r
			return "", p.Fail("control character in string")
		case c < utf8.RuneSelf:
			// Copy the run of plain ASCII up to the next special byte at once.
			j := r + 1
			for j < len(s) {
				if d := s[j]; d == '"' || d == '\\' || d < 0x20 || d >= utf8.RuneSelf {
					break
				}
				j++
			}
			b = append(b, s[r:j]...)
			r = j
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			b = utf8.AppendRune(b, rr)
		}
	}
	p.i = len(s)
	return "", p.Fail("unterminated string")
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// number checks JSON's number grammar and keeps the text, as UseNumber does.
func (p *Parser) number() (json.Number, error) {
	start := p.i
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.b[p.i] == '-' {
		p.i++
	}
	if p.i < len(p.b) && p.b[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return "", p.Fail("invalid number")
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return "", p.Fail("invalid number")
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return "", p.Fail("invalid number")
		}
	}
	return json.Number(p.b[start:p.i]), nil
}
