package nagios

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ErrTruncated is wrapped by the errors of a status file that ends inside a
// block or lacks the blocks every Nagios status file starts with. Such a file
// is being written or was cut short; reading it as a short list would delete
// alarms that still exist.
var ErrTruncated = errors.New("status file is truncated")

// Block is one "type { key=value ... }" section of a status.dat file.
type Block struct {
	// Type is the word before the brace: info, programstatus, hoststatus,
	// servicestatus, contactstatus, hostcomment, servicedowntime, ...
	Type string
	// Line is the 1-based line of the opening brace, for error messages.
	Line int
	// Fields holds the values as written; a key repeated in one block keeps
	// its last value, as Nagios' own reader does.
	Fields map[string]string
}

// Status is a parsed status.dat file: its blocks in file order.
type Status struct {
	Blocks []Block
}

// ReadStatusFile reads and parses a status.dat file. It returns an error for
// an unreadable file and one wrapping ErrTruncated for a half-written one.
func ReadStatusFile(path string) (*Status, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("nagios: read status file: %w", err)
	}
	st, err := ParseStatus(b)
	if err != nil {
		return nil, fmt.Errorf("nagios: %s: %w", path, err)
	}
	return st, nil
}

// ParseStatus parses the bytes of a status.dat file, as written by Nagios'
// xsddefault_save_status_data: "#" comment lines and blank lines between and
// inside blocks, "name {" opening a block, "key=value" lines (the value is
// everything after the first "="), "}" closing it. Leading and trailing
// blanks of a line are ignored, as Nagios' reader does.
//
// Nagios writes a newline inside a value as the two characters `\n`, which
// Unescape undoes. A line inside a block that holds no "=" continues the
// value of the line before it (a value with a raw line break, as a hand-made
// or foreign writer may produce), so it is joined to it with "\n" rather
// than dropped.
//
// The file must hold an info and a programstatus block (Nagios writes them
// first) and every block must be closed; otherwise, or when a last line cut
// before its newline cannot be read, the error wraps ErrTruncated. A file
// cut exactly between two blocks cannot be told from a whole one; Nagios
// itself never leaves one, as it writes a temporary file and renames it.
func ParseStatus(b []byte) (*Status, error) {
	st := &Status{}
	var cur *Block
	lastKey := ""
	n := 0
	for len(b) > 0 {
		n++
		var raw []byte
		partial := false // the last line, cut before its newline
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			raw, b = b[:i], b[i+1:]
		} else {
			raw, b, partial = b, nil, true
		}
		line := strings.TrimSpace(string(raw))
		if line == "" || line[0] == '#' {
			continue
		}
		if name, ok := blockHeader(line); ok {
			if cur != nil {
				return nil, fmt.Errorf("%w: line %d: block %q opened inside block %q of line %d",
					ErrTruncated, n, name, cur.Type, cur.Line)
			}
			cur = &Block{Type: name, Line: n, Fields: map[string]string{}}
			lastKey = ""
			continue
		}
		if cur == nil {
			if partial {
				// Most likely "hoststatus {" cut short.
				return nil, fmt.Errorf("%w: line %d: %q at the end", ErrTruncated, n, clip(line))
			}
			return nil, fmt.Errorf("line %d: %q outside a block", n, clip(line))
		}
		if line == "}" {
			st.Blocks = append(st.Blocks, *cur)
			cur = nil
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			if lastKey == "" {
				if partial {
					return nil, fmt.Errorf("%w: line %d: %q at the end", ErrTruncated, n, clip(line))
				}
				return nil, fmt.Errorf("line %d: %q is not key=value", n, clip(line))
			}
			cur.Fields[lastKey] += "\n" + line
			continue
		}
		cur.Fields[key] = val
		lastKey = key
	}
	if cur != nil {
		return nil, fmt.Errorf("%w: block %q of line %d is not closed", ErrTruncated, cur.Type, cur.Line)
	}
	for _, want := range []string{"info", "programstatus"} {
		if st.first(want) == nil {
			return nil, fmt.Errorf("%w: no %s block", ErrTruncated, want)
		}
	}
	return st, nil
}

// blockHeader reports whether a line opens a block ("hoststatus {") and
// returns the block's type. A value line that happens to end in "{" holds an
// "=" and is not a header.
func blockHeader(line string) (string, bool) {
	name, ok := strings.CutSuffix(line, "{")
	if !ok {
		return "", false
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return "", false
	}
	for _, c := range name {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "", false
		}
	}
	return name, true
}

// first returns the first block of a type, or nil.
func (st *Status) first(typ string) *Block {
	for i := range st.Blocks {
		if st.Blocks[i].Type == typ {
			return &st.Blocks[i]
		}
	}
	return nil
}

// OfType returns the blocks of one type, in file order.
func (st *Status) OfType(typ string) []Block {
	var out []Block
	for _, b := range st.Blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

// Info returns the fields of the info block (created, version, ...).
func (st *Status) Info() map[string]string {
	if b := st.first("info"); b != nil {
		return b.Fields
	}
	return nil
}

// Created returns when Nagios wrote the file (info.created), or the zero
// time when it does not say.
func (st *Status) Created() time.Time {
	n, err := strconv.ParseInt(st.Info()["created"], 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}

// Unescape undoes Nagios' escaping of plugin output in status.dat: `\n`
// stands for a line break and `\\` for a backslash.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var sb strings.Builder
	sb.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case 'n':
				sb.WriteByte('\n')
				i++
				continue
			case '\\':
				sb.WriteByte('\\')
				i++
				continue
			}
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

// clip shortens a line quoted in an error: a status line may hold kilobytes
// of plugin output.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
