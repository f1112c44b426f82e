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
