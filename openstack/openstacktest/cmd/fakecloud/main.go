// Command fakecloud runs the openstacktest fake cloud as a process, for tests
// that are not written in Go. It prints the base URL on the first line of
// standard output, optionally writes a clouds.yaml for it, and serves until
// killed. Drive it with POST <url>/_control (see openstacktest.ControlRequest).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
)

func main() { os.Exit(run()) }

func run() int {
	var (
		opts   openstacktest.Options
		clouds = flag.String("clouds-yaml", "", "write a clouds.yaml with cloud \"fakecloud\" to this path")
	)
	flag.StringVar(&opts.Addr, "listen", "127.0.0.1:0", "address to listen on")
	flag.IntVar(&opts.PageSize, "page-size", 1, "largest page of a listing")
	flag.StringVar(&opts.Password, "password", "secret", "the password Keystone accepts")
	flag.BoolVar(&opts.NoVolumeV3, "no-volumev3", false, "leave volumev3 out of the catalog")
	flag.StringVar(&opts.MaxMicroversion, "max-microversion", "2.100", "highest Nova microversion")
	servers := flag.Int("servers", 0, "add this many servers to the fixture's one")
	flag.Parse()

	s, err := openstacktest.New(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakecloud:", err)
		return 1
	}
	defer s.Close()
	if *servers > 0 {
		s.AddServers(*servers)
	}
	if *clouds != "" {
		if err := os.WriteFile(*clouds, []byte(s.CloudsYAML("fakecloud", opts.Password)), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "fakecloud:", err)
			return 1
		}
	}
	fmt.Println(s.URL)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return 0
}
