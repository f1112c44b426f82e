package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// line returns the line of a setting in the parsed file (0 when it is not
// there, for instance when a default was applied), so that an error about
// it can be found in the file.
func (c *Config) line(path ...string) int {
	n := c.root
	line := 0
	for _, k := range path {
		if n == nil || n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				line, next = n.Content[i].Line, n.Content[i+1]
				break
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

// checkLoopback accepts host:port where host is localhost or a loopback
// address: the metrics endpoint has no authentication, so it must not be
// reachable from other machines (a reverse proxy or an agent on the same
// host may expose it deliberately).
func checkLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("%q: must be host:port on a loopback address, such as \"127.0.0.1:9464\"", addr)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: must be a loopback address (127.0.0.1, ::1 or localhost): the endpoint has no authentication", addr)
	}
	return nil
}

var fieldNotFound = regexp.MustCompile(`^(line \d+): field (\S+) not found in type .*$`)

// yamlError rewrites yaml.v3's strict-decoding errors, which name Go types
// ("field x not found in type struct {...}"), in the file's own terms.
func yamlError(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		msgs[i] = fieldNotFound.ReplaceAllString(m, `$1: unknown key "$2"`)
	}
	return strings.Join(msgs, "; ")
}

var yamlSyntax = regexp.MustCompile(`^yaml: (?:line \d+: )?(.*)$`)

// SyntaxError returns a yaml.v3 syntax error of src with the line where the
// problem is. yaml.v3 reports the line of the enclosing construct when it
// has one, counted from 0 for parser errors (a bad indentation on line 4
// inside a list that starts on line 2 is reported as "line 1"), and no line
// at all for an unknown alias. The problem's line is the first line whose
// prefix of the file already fails with the same message: the parser reads
// the file in order and stops at the first problem, so every longer prefix
// fails too, which lets a binary search find it. Other errors are returned
// unchanged.
func SyntaxError(src []byte, err error) error {
	var te *yaml.TypeError
	if err == nil || errors.As(err, &te) {
		return err
	}
	m := yamlSyntax.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	problem := m[1]
	var starts []int // byte offset where each line ends (exclusive), 1-based line i ends at starts[i-1]
	for i, c := range src {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	if len(starts) == 0 || starts[len(starts)-1] != len(src) {
		starts = append(starts, len(src))
	}
	fails := func(n int) bool {
		var doc yaml.Node
		e := yaml.Unmarshal(src[:starts[n-1]], &doc)
		if e == nil {
			return false
		}
		em := yamlSyntax.FindStringSubmatch(e.Error())
		return em != nil && em[1] == problem
	}
	lo, hi := 1, len(starts)
	if !fails(hi) {
		return err
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return fmt.Errorf("yaml: line %d: %s", lo, problem)
}
