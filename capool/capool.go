// Package capool loads the certificate authorities a client trusts instead
// of the system's (cacert, ca_file settings) from a PEM file.
package capool

import (
	"crypto/x509"
	"fmt"
	"os"
)

// Load reads the PEM file at path into a pool. A file without a single
// certificate is an error: trusting nothing would fail every connection
// later, with a less helpful message.
func Load(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}
