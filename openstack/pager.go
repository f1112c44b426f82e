package openstack

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/openstack-synchronizer/synchronizer/jsonvalue"
)

// maxPages stops a listing whose links go round in circles.
const maxPages = 100000

// errPagesRepeat is a listing whose links went round: a page's next link
// was one already followed. Real services do it when the collection
// changes under the listing (Nova, when the server a marker names moves
// from its build requests into a cell); the listing is started over.
var errPagesRepeat = errors.New("pagination does not end")

// listSpec says how one collection is fetched and paged.
type listSpec struct {
	service string // "nova", "neutron", ... for messages
	what    string // "servers", ... for messages
	url     string // first page, query included
	key     string // JSON key of the item array
	// links: the body has <key>_links with a "next" link (nova, neutron,
	// cinder). Without it (heat), the next page is asked for with the last
	// item's id as marker until a page comes back empty.
	links  bool
	paged  bool // whether limit/marker apply at all
	header func() map[string]string
	// retryPage, when set, may repair a failed page (nova's microversion
	// fall-back) and reports whether to fetch the page again.
	retryPage func(err error, used map[string]string) bool
	// date, when set, receives the Date header of the first page: the
	// service's clock when the listing began (zero when absent).
	date *time.Time
}

// list fetches every page of a collection and hands each item to visit in
// order. It returns the number of pages read; any failed page fails the
// whole listing.
func (s *session) list(ctx context.Context, ls listSpec, visit func(obj map[string]any, fp [16]byte) error) (int, error) {
	next := ls.url
	base, err := url.Parse(ls.url)
	if err != nil {
		return 0, fmt.Errorf("%s: list %s: %w", ls.service, ls.what, err)
	}
	seen := map[string]bool{}
	attempts := *s.opts.Retries + 1
	for page := 1; ; page++ {
		if page > maxPages || seen[next] {
			return page - 1, fmt.Errorf("%s: list %s: %w (page %d repeats %s)", ls.service, ls.what, errPagesRepeat, page, next)
		}
		seen[next] = true
		// Items are handed to visit only once the page is whole, so that a
		// page retried after a broken body is not counted twice.
		var (
			items []map[string]any
			fps   [][16]byte
			href  string
		)
		decode := func(r io.Reader) error {
			items, fps, href = items[:0], fps[:0], ""
			return decodePage(r, ls.key, func(obj map[string]any, raw []byte) error {
				items = append(items, obj)
				fps = append(fps, fingerprint(raw))
				return nil
			}, &href)
		}
		for {
			var hdr map[string]string
			if ls.header != nil {
				hdr = ls.header()
			}
			var rh http.Header
			err = s.getWith(ctx, next, hdr, attempts, decode, &rh)
			if err == nil && page == 1 && ls.date != nil {
				*ls.date, _ = http.ParseTime(rh.Get("Date"))
			}
			if err != nil && ls.retryPage != nil && ls.retryPage(err, hdr) {
				continue
			}
			break
		}
		if err != nil {
			return page - 1, fmt.Errorf("%s: list %s page %d: %w", ls.service, ls.what, page, err)
		}
		for i, obj := range items {
			if err := visit(obj, fps[i]); err != nil {
				return page, fmt.Errorf("%s: list %s page %d: %w", ls.service, ls.what, page, err)
			}
		}
		n := len(items)
		lastID := ""
		if n > 0 {
			lastID, _ = items[n-1]["id"].(string)
		}
		switch {
		case !ls.paged:
			return page, nil
		case ls.links:
			if href == "" {
				return page, nil
			}
			next, err = sameHost(base, href)
			if err != nil {
				return page, fmt.Errorf("%s: list %s page %d: next link: %w", ls.service, ls.what, page, err)
			}
		default:
			if n == 0 {
				return page, nil
			}
			if lastID == "" {
				return page, fmt.Errorf("%s: list %s page %d: an item has no id to page on", ls.service, ls.what, page)
			}
			u := *base
			q := u.Query()
			q.Set("marker", lastID)
			u.RawQuery = q.Encode()
			next = u.String()
		}
	}
}

// sameHost resolves a next link and keeps it on the endpoint's scheme and
// host: services behind a proxy often write their internal address into
// links.
func sameHost(base *url.URL, href string) (string, error) {
	u, err := base.Parse(href)
	if err != nil {
		return "", err
	}
	u.Scheme, u.Host, u.User = base.Scheme, base.Host, nil
	return u.String(), nil
}

// pageBuffers are reused between pages: a page's bytes are only read
// while it is parsed (strings are copied out of them).
var pageBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPageBytes bounds one page body.
const maxPageBytes = 1 << 30

// decodePage reads one page and hands each element of the array under key
// to visit. The href of the "next" link of <key>_links is stored in next.
// Memory is bounded by the page: its bytes plus the decoded items.
func decodePage(r io.Reader, key string, visit func(obj map[string]any, raw []byte) error, next *string) error {
	buf := pageBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 64<<20 {
			pageBuffers.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(io.LimitReader(r, maxPageBytes+1)); err != nil {
		return err
	}
	if buf.Len() > maxPageBytes {
		return fmt.Errorf("page larger than %d bytes", maxPageBytes)
	}
	p := jsonvalue.NewParser(buf.Bytes())
	found := false
	err := p.Members(func(k string) error {
		switch k {
		case key:
			found = true
			err := p.Elements(func() error {
				start := p.Offset()
				obj, err := p.Object()
				if err != nil {
					return err
				}
				return visit(obj, buf.Bytes()[start:p.Offset()])
			})
			if err != nil {
				return fmt.Errorf("%q: %w", key, err)
			}
		case key + "_links":
			v, err := p.Value()
			if err != nil {
				return err
			}
			links, _ := v.([]any)
			for _, l := range links {
				if m, ok := l.(map[string]any); ok && str(m, "rel") == "next" {
					*next = str(m, "href")
				}
			}
		default:
			if _, err := p.Value(); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = p.End()
	}
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("no %q in the response", key)
	}
	return nil
}

// fpSeeds make the fingerprints of listed items: two independent 64-bit
// hashes, seeded per process (fingerprints are never stored).
var fpSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

// fingerprint identifies an item's bytes (entity.Fingerprint).
func fingerprint(raw []byte) (fp [16]byte) {
	binary.LittleEndian.PutUint64(fp[:8], maphash.Bytes(fpSeeds[0], raw))
	binary.LittleEndian.PutUint64(fp[8:], maphash.Bytes(fpSeeds[1], raw))
	fp[0] |= 1 // never the zero of "no fingerprint"
	return fp
}

// withQuery adds query parameters to a URL.
func withQuery(raw string, kv ...string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// limitQuery is the limit parameter for a page size (none when 0).
func limitQuery(n int) []string {
	if n <= 0 {
		return nil
	}
	return []string{"limit", strconv.Itoa(n)}
}
