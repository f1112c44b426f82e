package openstack

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
)

// HTTPError is an unexpected HTTP status from a service. Message is a short
// excerpt of the response body (the service's own error text).
type HTTPError struct {
	Method  string
	URL     string
	Status  int
	Message string
}

func (e *HTTPError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s %s: HTTP %d", e.Method, e.URL, e.Status)
	}
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.URL, e.Status, e.Message)
}

// timeoutError is one request that outlived request_timeout.
type timeoutError struct{ after time.Duration }

func (e *timeoutError) Error() string { return fmt.Sprintf("request timed out after %s", e.after) }

// Timeout reports true, as net.Error does.
func (e *timeoutError) Timeout() bool { return true }

var messageRE = regexp.MustCompile(`"message"\s*:\s*"((?:[^"\\]|\\.)*)"`)

// httpError turns gophercloud's status errors into *HTTPError with a short
// message instead of the whole body and headers; other errors pass through.
func httpError(err error) error {
	var unable *gophercloud.ErrUnableToReauthenticate
	if errors.As(err, &unable) {
		return fmt.Errorf("re-authentication failed: %w", httpErrorOrSelf(unable.ErrReauth))
	}
	var uc gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &uc) {
		var puc *gophercloud.ErrUnexpectedResponseCode
		if !errors.As(err, &puc) {
			return err
		}
		uc = *puc
	}
	he := &HTTPError{Method: uc.Method, URL: uc.URL, Status: uc.Actual}
	body := strings.TrimSpace(string(uc.Body))
	if m := messageRE.FindStringSubmatch(body); m != nil {
		body = strings.ReplaceAll(m[1], `\"`, `"`)
	}
	if len(body) > 200 {
		body = body[:200] + "..."
	}
	he.Message = body
	var after *gophercloud.ErrErrorAfterReauthentication
	if errors.As(err, &after) {
		return fmt.Errorf("after re-authentication: %w", he)
	}
	return he
}

func httpErrorOrSelf(err error) error {
	if err == nil {
		return errors.New("unknown error")
	}
	return httpError(err)
}

// retryable reports whether a failed request may succeed when repeated: 5xx,
// 429, time-outs and connection errors. 4xx (401 after re-auth included)
// will not.
func retryable(err error) bool {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status >= 500 || he.Status == http.StatusTooManyRequests
	}
	var te *timeoutError
	if errors.As(err, &te) {
		return true
	}
	// A certificate that fails verification fails again.
	var ce *tls.CertificateVerificationError
	if errors.As(err, &ce) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}
