package nagios

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// CGI reads a remote Nagios Core 4 through its JSON CGI, statusjson.cgi.
type CGI struct {
	// URL is the address of statusjson.cgi, without a query.
	URL      string
	User     string
	Password string //nolint:gosec // sent as basic auth, never logged
	Client   *http.Client
}

// Status bit values of the JSON CGI (include/statusdata.h): not
// status.dat's 0..3.
var (
	cgiServiceStates = map[int]string{1: "PENDING", 2: "OK", 4: "WARNING", 8: "UNKNOWN", 16: "CRITICAL"}
	cgiHostStates    = map[int]string{1: "PENDING", 2: "UP", 4: "DOWN", 8: "UNREACHABLE"}
)

// cgiResult is the "result" object every statusjson.cgi answer carries.
type cgiResult struct {
	Query          string `json:"query"`
	TypeCode       *int   `json:"type_code"`
	TypeText       string `json:"type_text"`
	Message        string `json:"message"`
	QueryTime      int64  `json:"query_time"`
	LastDataUpdate int64  `json:"last_data_update"`
}

// cgiCheck holds the fields of a host or service in a details=true list.
type cgiCheck struct {
	HostName       string `json:"host_name"`
	Name           string `json:"name"` // hosts name themselves "name"
	Description    string `json:"description"`
	PluginOutput   string `json:"plugin_output"`
	LongOutput     string `json:"long_plugin_output"`
	Status         *int   `json:"status"`
	LastCheck      int64  `json:"last_check"` // epoch milliseconds
	LastChange     int64  `json:"last_state_change"`
	CurrentAttempt int    `json:"current_attempt"`
	MaxAttempts    int    `json:"max_attempts"`
	StateType      int    `json:"state_type"`
	HasBeenChecked bool   `json:"has_been_checked"`
	Acknowledged   bool   `json:"problem_has_been_acknowledged"`
	DowntimeDepth  int    `json:"scheduled_downtime_depth"`
}

// Hosts lists every host check the CGI user may see.
func (g *CGI) Hosts(ctx context.Context) ([]Check, time.Time, error) {
	var body struct {
		Result cgiResult `json:"result"`
		Data   struct {
			Hostlist map[string]cgiCheck `json:"hostlist"`
		} `json:"data"`
	}
	if err := g.get(ctx, "hostlist", &body, &body.Result); err != nil {
		return nil, time.Time{}, err
	}
	if body.Data.Hostlist == nil {
		return nil, time.Time{}, fmt.Errorf("nagios: hostlist: answer has no data.hostlist")
	}
	out := make([]Check, 0, len(body.Data.Hostlist))
	for _, name := range slices.Sorted(maps.Keys(body.Data.Hostlist)) {
		h := body.Data.Hostlist[name]
		c, err := h.check(name, "", cgiHostStates)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("nagios: hostlist: %w", err)
		}
		out = append(out, c)
	}
	return out, millis(body.Result.LastDataUpdate), nil
}

// Services lists every service check the CGI user may see.
func (g *CGI) Services(ctx context.Context) ([]Check, time.Time, error) {
	var body struct {
		Result cgiResult `json:"result"`
		Data   struct {
			Servicelist map[string]map[string]cgiCheck `json:"servicelist"`
		} `json:"data"`
	}
	if err := g.get(ctx, "servicelist", &body, &body.Result); err != nil {
		return nil, time.Time{}, err
	}
	if body.Data.Servicelist == nil {
		return nil, time.Time{}, fmt.Errorf("nagios: servicelist: answer has no data.servicelist")
	}
	var out []Check
	for _, host := range slices.Sorted(maps.Keys(body.Data.Servicelist)) {
		svcs := body.Data.Servicelist[host]
		for _, desc := range slices.Sorted(maps.Keys(svcs)) {
			c, err := svcs[desc].check(host, desc, cgiServiceStates)
			if err != nil {
				return nil, time.Time{}, fmt.Errorf("nagios: servicelist: %w", err)
			}
			out = append(out, c)
		}
	}
	return out, millis(body.Result.LastDataUpdate), nil
}

// get runs one query and decodes the answer into body; res points into body
// and is checked for the CGI's own error report.
func (g *CGI) get(ctx context.Context, query string, body any, res *cgiResult) error {
	u, err := url.Parse(g.URL)
	if err != nil {
		return fmt.Errorf("nagios: url: %w", err)
	}
	q := u.Query()
	q.Set("query", query)
	q.Set("details", "true")
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("nagios: %s: %w", query, err)
	}
	req.Header.Set("Accept", "application/json")
	if g.User != "" || g.Password != "" {
		req.SetBasicAuth(g.User, g.Password)
	}
	client := g.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("nagios: %s: %w", query, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// The body of an error page is not worth carrying: it may echo the
		// request, and it is HTML more often than not.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return fmt.Errorf("nagios: %s: HTTP %s", query, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(body); err != nil {
		return fmt.Errorf("nagios: %s: decode answer: %w", query, err)
	}
	if res.TypeCode == nil {
		return fmt.Errorf("nagios: %s: answer has no result.type_code", query)
	}
	if *res.TypeCode != 0 {
		return fmt.Errorf("nagios: %s: CGI error %d %s: %s", query, *res.TypeCode, res.TypeText, res.Message)
	}
	if res.Query != query {
		return fmt.Errorf("nagios: %s: answer is for query %q", query, res.Query)
	}
	return nil
}

func (c cgiCheck) check(host, service string, states map[int]string) (Check, error) {
	what := host
	if service != "" {
		what += "/" + service
	}
	if c.Status == nil {
		return Check{}, fmt.Errorf("%s: no status", what)
	}
	state, ok := states[*c.Status]
	if !ok {
		return Check{}, fmt.Errorf("%s: unknown status %d", what, *c.Status)
	}
	if !c.HasBeenChecked {
		state = "PENDING"
	}
	return Check{
		Host:            host,
		Service:         service,
		State:           state,
		Hard:            c.StateType == 1,
		PluginOutput:    c.PluginOutput,
		LongOutput:      c.LongOutput,
		LastCheck:       millis(c.LastCheck),
		LastStateChange: millis(c.LastChange),
		CurrentAttempt:  c.CurrentAttempt,
		MaxAttempts:     c.MaxAttempts,
		Acknowledged:    c.Acknowledged,
		DowntimeDepth:   c.DowntimeDepth,
	}, nil
}

// millis converts the CGI's epoch milliseconds; 0 means never.
func millis(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
