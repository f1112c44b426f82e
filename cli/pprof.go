package cli

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
)

// startPprof serves Go's profiler on a loopback address (set
// SYNCHRONIZER_PPROF=127.0.0.1:6060 when measuring).
func startPprof(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("SYNCHRONIZER_PPROF: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("SYNCHRONIZER_PPROF: %s is not a loopback address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("SYNCHRONIZER_PPROF: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/heap", pprof.Index)
	go http.Serve(ln, mux)
	return nil
}
