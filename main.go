// Command synchronizer is a sidecar for OpenStack Vitrage: it samples
// OpenStack, Nagios and other sources, keeps a baseline of their entities in
// SQLite and tells its consumers only what changed, over JSON-RPC on a Unix
// socket. See README.md.
package main

import (
	_ "embed"
	"os"

	"github.com/openstack-synchronizer/synchronizer/cli"
)

//go:embed schema.sql
var schema string

//go:embed config.yaml
var defaultConfig []byte

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.Env{
		Schema:        schema,
		DefaultConfig: defaultConfig,
		Stdout:        os.Stdout,
		Stderr:        os.Stderr,
	}))
}
