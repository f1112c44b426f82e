package openstack

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf16"

	"github.com/gophercloud/gophercloud/v2"
	gcos "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"

	"github.com/openstack-synchronizer/synchronizer/backoff"
)

// ErrNoEndpoint is returned when the catalog has no endpoint for a service.
var ErrNoEndpoint = errors.New("no endpoint in the catalog")

// renewBefore is how long before its expiry a token is renewed, so that a
// poll does not start with a token that dies half-way; a token that lives
// less than four times that is renewed in its last quarter instead (a
// short-lived token renewed 2 minutes early would mean a login every poll).
const renewBefore = 2 * time.Minute

// renewWindow is how long before exp a token obtained at issued is renewed.
func renewWindow(issued, exp time.Time) time.Duration {
	if issued.IsZero() {
		return renewBefore
	}
	return min(renewBefore, exp.Sub(issued)/4)
}

// session is an authenticated connection to one cloud. gophercloud's
// ProviderClient holds the token and re-authenticates once on a 401; the
// session adds the per-request time-out, retries and redaction.
type session struct {
	opts Options
	dir  string
	log  *slog.Logger

	mu    sync.Mutex
	cloud *cloud
	pc    *gophercloud.ProviderClient
	seen  []string // the latest tokens, for redact
	auths int      // tokens obtained
	// issued is when the current token was obtained.
	issued time.Time

	// Requests and response body bytes since the collector was built,
	// for the metrics.
	requests, bytes atomic.Int64
}

// meter counts the requests and response body bytes of one listing; it
// rides in the context of the listing's requests.
type meter struct{ requests, bytes atomic.Int64 }

type meterKey struct{}

func withMeter(ctx context.Context, m *meter) context.Context {
	return context.WithValue(ctx, meterKey{}, m)
}

// count adds one response of n body bytes to the session's totals and to
// the listing's meter.
func (s *session) count(ctx context.Context, n int64) {
	s.requests.Add(1)
	s.bytes.Add(n)
	if m, _ := ctx.Value(meterKey{}).(*meter); m != nil {
		m.requests.Add(1)
		m.bytes.Add(n)
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ensure authenticates when there is no token yet or it is about to expire.
func (s *session) ensure(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pc != nil {
		exp, ok := s.expiry()
		if !ok || time.Until(exp) > renewWindow(s.issued, exp) || s.pc.ReauthFunc == nil {
			// A token given in the settings cannot be renewed: use it
			// until Keystone refuses it.
			return nil
		}
		s.log.Info("openstack token about to expire, renewing", "expires_at", exp)
		if err := s.pc.Reauthenticate(ctx, s.pc.Token()); err == nil {
			s.noteToken()
			return nil
		}
		s.pc = nil // start over: credentials may have changed
	}
	c, err := resolveCloud(s.opts, s.dir)
	if err != nil {
		return err
	}
	s.cloud = c
	ao := c.authOptions()
	pc, err := gcos.NewClient(ao.IdentityEndpoint)
	if err != nil {
		return redactWith(fmt.Errorf("keystone: auth_url: %w", err), s.secretsLocked())
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = c.tlsConfig
	pc.HTTPClient = http.Client{Transport: tr}
	pc.UserAgent.Prepend("synchronizer")
	actx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout.D())
	defer cancel()
	if err := gcos.AuthenticateV3(actx, pc, &ao, gophercloud.EndpointOpts{}); err != nil {
		return redactWith(fmt.Errorf("keystone: authenticate (%s): %w", c.source, httpError(err)), s.secretsLocked())
	}
	s.pc = pc
	s.noteToken()
	return nil
}

// noteToken records a new current token as a secret and counts it; mu must
// be held.
func (s *session) noteToken() {
	t := s.pc.Token()
	if t == "" || slices.Contains(s.seen, t) {
		return
	}
	s.auths++
	s.issued = time.Now()
	s.seen = append(s.seen, t)
	if len(s.seen) > 16 {
		s.seen = append([]string(nil), s.seen[len(s.seen)-16:]...)
	}
}

func (s *session) expiry() (time.Time, bool) {
	r, ok := s.pc.GetAuthResult().(tokens.CreateResult)
	if !ok {
		return time.Time{}, false
	}
	t, err := r.ExtractToken()
	if err != nil || t.ExpiresAt.IsZero() {
		return time.Time{}, false
	}
	return t.ExpiresAt, true
}

// endpoint returns the catalog URL of the first of types for the configured
// interface and region, ending in "/".
func (s *session) endpoint(types ...string) (string, error) {
	s.mu.Lock()
	pc, c := s.pc, s.cloud
	s.mu.Unlock()
	if pc == nil {
		return "", errors.New("not authenticated")
	}
	r, ok := pc.GetAuthResult().(tokens.CreateResult)
	if !ok {
		return "", errors.New("keystone: no catalog in the token")
	}
	cat, err := r.ExtractServiceCatalog()
	if err != nil {
		return "", fmt.Errorf("keystone: catalog: %w", err)
	}
	for _, t := range types {
		for _, e := range cat.Entries {
			if e.Type != t {
				continue
			}
			for _, ep := range e.Endpoints {
				if gophercloud.Availability(ep.Interface) != c.iface {
					continue
				}
				if c.region != "" && ep.Region != c.region && ep.RegionID != c.region {
					continue
				}
				return gophercloud.NormalizeURL(ep.URL), nil
			}
		}
	}
	return "", fmt.Errorf("%w: type %s, interface %s, region %q", ErrNoEndpoint, strings.Join(types, " or "), c.iface, c.region)
}

// get fetches url and hands the body to decode, retrying 5xx, 429,
// connection errors and time-outs with exponential back-off. Each attempt
// has its own time-out, body decoding included.
func (s *session) get(ctx context.Context, url string, hdr map[string]string, attempts int, decode func(io.Reader) error) error {
	return s.getWith(ctx, url, hdr, attempts, decode, nil)
}

// getWith is get that also stores the headers of the successful response
// in respHdr, when not nil.
func (s *session) getWith(ctx context.Context, url string, hdr map[string]string, attempts int, decode func(io.Reader) error, respHdr *http.Header) error {
	s.mu.Lock()
	pc := s.pc
	s.mu.Unlock()
	if pc == nil {
		return errors.New("not authenticated")
	}
	retry := backoff.Policy{Min: s.opts.RetryBackoff.D(), Max: 30 * time.Second, Jitter: 0.25}
	var err error
	for try := 0; try < attempts; try++ {
		if try > 0 {
			s.log.Debug("openstack request retry", "url", url, "attempt", try+1, "err", s.redact(err))
			if !backoff.Wait(ctx, retry.Delay(try)) {
				return s.redact(fmt.Errorf("%w (after: %v)", ctx.Err(), err))
			}
		}
		err = s.once(ctx, pc, url, hdr, decode, respHdr)
		if err == nil || ctx.Err() != nil || !retryable(err) {
			break
		}
	}
	if ctx.Err() != nil && err != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w: %v", ctx.Err(), err)
	}
	return s.redact(err)
}

func (s *session) once(ctx context.Context, pc *gophercloud.ProviderClient, url string, hdr map[string]string, decode func(io.Reader) error, respHdr *http.Header) error {
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout.D())
	defer cancel()
	before := pc.Token()
	resp, err := pc.Request(rctx, http.MethodGet, url, &gophercloud.RequestOpts{
		OkCodes:          []int{http.StatusOK},
		MoreHeaders:      hdr,
		KeepResponseBody: true,
	})
	if pc.Token() != before {
		// gophercloud re-authenticated after a 401.
		s.mu.Lock()
		if s.pc == pc {
			s.noteToken()
		}
		s.mu.Unlock()
	}
	if err != nil {
		var n int64
		var uc gophercloud.ErrUnexpectedResponseCode
		var puc *gophercloud.ErrUnexpectedResponseCode
		switch {
		case errors.As(err, &uc):
			n = int64(len(uc.Body))
		case errors.As(err, &puc):
			n = int64(len(puc.Body))
		}
		s.count(ctx, n)
		if rctx.Err() != nil && ctx.Err() == nil {
			return &timeoutError{after: s.opts.RequestTimeout.D()}
		}
		return httpError(err)
	}
	defer resp.Body.Close()
	if respHdr != nil {
		*respHdr = resp.Header
	}
	body := &countingReader{r: resp.Body}
	defer func() { s.count(ctx, body.n) }()
	if err := decode(body); err != nil {
		if rctx.Err() != nil && ctx.Err() == nil {
			return &timeoutError{after: s.opts.RequestTimeout.D()}
		}
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

// tokens returns how many tokens were obtained so far.
func (s *session) tokenCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auths
}

// redact replaces every known secret in err's text; errors.Is/As still see
// the original chain.
func (s *session) redact(err error) error {
	if err == nil {
		return nil
	}
	s.mu.Lock()
	secrets := s.secretsLocked()
	s.mu.Unlock()
	return redactWith(err, secrets)
}

// secretsLocked lists what must never be shown; mu must be held.
func (s *session) secretsLocked() []string {
	secrets := append([]string(nil), s.seen...)
	if s.cloud != nil {
		secrets = append(secrets, s.cloud.secrets...)
	}
	return secrets
}

func redactWith(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	var forms []string
	for _, sec := range secrets {
		if len(sec) >= 4 {
			forms = append(forms, secretForms(sec)...)
		}
	}
	// Longest first: a form may contain another (the JSON of the JSON).
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	for _, f := range slices.Compact(forms) {
		msg = strings.ReplaceAll(msg, f, "***")
	}
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// secretForms are the ways a secret may come back in a message: as is,
// escaped for JSON by Go (\u003c for <, &, >) or by Python (ASCII only),
// with either case of hex digit, twice escaped (a JSON body quoted in a JSON
// error), URL-encoded (query, path, Python's quote), HTML-escaped.
func secretForms(sec string) []string {
	forms := []string{sec}
	add := func(f string) {
		if f != "" && !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	for _, j := range []string{jsonEscape(sec, true, false), jsonEscape(sec, false, false), jsonEscape(sec, true, true), jsonEscape(sec, false, true)} {
		add(j)
		add(upperHexEscapes(j))
		add(jsonEscape(j, false, false))
	}
	// Python's quote writes a space as %20 and escapes +.
	for _, u := range []string{url.QueryEscape(sec), url.PathEscape(sec), strings.ReplaceAll(url.QueryEscape(sec), "+", "%20")} {
		add(u)
		add(lowerPercent(u))
	}
	add(html.EscapeString(sec))
	return forms
}

// jsonEscape is s as inside a JSON string: html escapes <, > and & as Go
// does; ascii escapes every non-ASCII rune as Python's json.dumps does.
func jsonEscape(s string, htmlSafe, ascii bool) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20, htmlSafe && (r == '<' || r == '>' || r == '&'), r == 0x2028 || r == 0x2029:
			fmt.Fprintf(&b, `\u%04x`, r)
		case ascii && r > 0x7e:
			for _, u := range utf16.Encode([]rune{r}) {
				fmt.Fprintf(&b, `\u%04x`, u)
			}
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

var (
	unicodeEscape = regexp.MustCompile(`\\u[0-9a-f]{4}`)
	percentEscape = regexp.MustCompile(`%[0-9A-F]{2}`)
)

// upperHexEscapes writes the \u escapes of s with upper-case hex digits.
func upperHexEscapes(s string) string {
	return unicodeEscape.ReplaceAllStringFunc(s, func(m string) string { return `\u` + strings.ToUpper(m[2:]) })
}

// lowerPercent writes the %XX escapes of s with lower-case hex digits.
func lowerPercent(s string) string {
	return percentEscape.ReplaceAllStringFunc(s, strings.ToLower)
}
