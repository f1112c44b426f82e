package listeners

import "crypto/tls"

// AMQPTLS is the tls: section of an amqp listener, for other AMQP clients of
// the sidecar (publishers) that take the same settings.
type AMQPTLS = amqpTLS

// AMQPEndpoints turns urls: (oslo's rabbit:// and multi-host forms too) and
// tls: into one dialable URL per host, the host:port of each for logs, and
// the TLS config (nil without tls:). Errors never contain credentials.
func AMQPEndpoints(urls []string, t *AMQPTLS, dir string) (dial, hosts []string, tc *tls.Config, err error) {
	if t != nil {
		if tc, err = loadTLS(t, dir); err != nil {
			return nil, nil, nil, err
		}
	}
	for _, raw := range urls {
		for _, u := range splitHosts(raw) {
			norm, host, err := normalizeURL(u, t != nil)
			if err != nil {
				return nil, nil, nil, err
			}
			dial = append(dial, norm)
			hosts = append(hosts, host)
		}
	}
	return dial, hosts, tc, nil
}
