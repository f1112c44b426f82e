package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/rpc"
)

func outputFlag(fs *flag.FlagSet) *string {
	return fs.String("o", "json", "output format: json or table")
}

// callAndShow calls method and prints its result as JSON or, with -o
// table, through table. Unknown --type values are refused first.
func (c *clientFlags) callAndShow(env Env, method string, params any, types []string, format string,
	table func(io.Writer, json.RawMessage) error) error {
	if format != "json" && format != "table" {
		return usageError{fmt.Errorf("-o: %q is not json or table", format)}
	}
	ctx := context.Background()
	cl, err := c.dial(ctx, env)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := checkTypes(ctx, cl, types); err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.Call(ctx, method, params, &raw); err != nil {
		return err
	}
	if format == "table" {
		return table(env.Stdout, raw)
	}
	return printRaw(env.Stdout, raw)
}

// checkTypesAt is checkTypes on a connection of its own (watch).
func checkTypesAt(path string, types []string) error {
	if len(types) == 0 {
		return nil
	}
	ctx := context.Background()
	cl, err := rpc.Dial(ctx, path)
	if err != nil {
		return err
	}
	defer cl.Close()
	return checkTypes(ctx, cl, types)
}

// checkTypes refuses a type that is neither one of the contract's nor one
// the synchronizer holds entities of or has in active_entity_types: a typo
// would otherwise print nothing, or watch forever. A plugin's or topology's
// own type is known once the synchronizer holds one entity of it.
func checkTypes(ctx context.Context, cl *rpc.Client, types []string) error {
	if len(types) == 0 {
		return nil
	}
	known, err := knownTypes(ctx, cl)
	if err != nil {
		return err
	}
	for _, t := range types {
		if !known[t] {
			names := make([]string, 0, len(known))
			for k := range known {
				names = append(names, k)
			}
			sort.Strings(names)
			return usageError{fmt.Errorf("--type: unknown entity type %q; known types: %s", t, strings.Join(names, ", "))}
		}
	}
	return nil
}

func knownTypes(ctx context.Context, cl *rpc.Client) (map[string]bool, error) {
	var st struct {
		Counts map[string]map[string]int `json:"counts"`
		Config struct {
			Active []string `json:"active_entity_types"`
		} `json:"config"`
	}
	if err := cl.Call(ctx, "status", struct{}{}, &st); err != nil {
		return nil, fmt.Errorf("status (to check --type): %w", err)
	}
	known := map[string]bool{}
	for _, t := range entity.ContractTypes {
		known[t] = true
	}
	for _, types := range st.Counts {
		for t := range types {
			known[t] = true
		}
	}
	for _, t := range st.Config.Active {
		known[t] = true
	}
	return known, nil
}

type tableEntity struct {
	Seq       int64  `json:"seq"`
	Action    string `json:"action"`
	Key       string `json:"key"`
	Name      string `json:"name"`
	State     string `json:"state"`
	Source    string `json:"source"`
	ParentKey string `json:"parent_key"`
	Timestamp string `json:"timestamp"`
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// orDash keeps empty cells visible in a table.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printEntitiesTable(w io.Writer, raw json.RawMessage) error {
	var res struct {
		Seq      int64         `json:"seq"`
		Entities []tableEntity `json:"entities"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("get_all result: %w", err)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "KEY\tNAME\tSTATE\tSOURCE\tPARENT")
	for _, e := range res.Entities {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Key, orDash(e.Name), orDash(e.State), e.Source, orDash(e.ParentKey))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d entities as of seq %d\n", len(res.Entities), res.Seq)
	return err
}

func printChangesTable(w io.Writer, raw json.RawMessage) error {
	var res struct {
		Seq     int64         `json:"seq"`
		More    bool          `json:"more"`
		Changes []tableEntity `json:"changes"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("changes result: %w", err)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "SEQ\tACTION\tKEY\tSTATE\tSOURCE\tTIMESTAMP")
	for _, c := range res.Changes {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", c.Seq, c.Action, c.Key, orDash(c.State), c.Source, orDash(c.Timestamp))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var err error
	if res.More {
		_, err = fmt.Fprintf(w, "%d changes through seq %d; more follow: --since %d\n", len(res.Changes), res.Seq, res.Seq)
	} else {
		_, err = fmt.Fprintf(w, "%d changes through seq %d\n", len(res.Changes), res.Seq)
	}
	return err
}

type unitStatus struct {
	Name        string         `json:"name"`
	Type        string         `json:"type"`
	State       string         `json:"state"`
	Entities    map[string]int `json:"entities"`
	LastSuccess time.Time      `json:"last_success"`
	LastError   string         `json:"last_error"`
	Messages    *int64         `json:"messages"`
}

func (u unitStatus) entities() int {
	n := 0
	for _, c := range u.Entities {
		n += c
	}
	return n
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func printStatusTable(w io.Writer, raw json.RawMessage) error {
	var st struct {
		Version   map[string]any `json:"version"`
		PID       int            `json:"pid"`
		StartedAt time.Time      `json:"started_at"`
		Socket    string         `json:"socket"`
		Database  string         `json:"database"`
		Entities  int            `json:"entities"`
		ChangeLog struct {
			First int64 `json:"first_seq"`
			Last  int64 `json:"last_seq"`
		} `json:"change_log"`
		RPCRaw map[string]int `json:"rpc"`
		Config struct {
			Path         string    `json:"path"`
			LoadedAt     time.Time `json:"loaded_at"`
			Reloads      int       `json:"reloads"`
			LastError    string    `json:"last_error"`
			NeedsRestart []string  `json:"needs_restart"`
		} `json:"config"`
		Collectors []unitStatus               `json:"collectors"`
		Listeners  []unitStatus               `json:"listeners"`
		Held       map[string]map[string]int  `json:"held_deletes"`
		WAL        map[string]json.RawMessage `json:"wal"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("status result: %w", err)
	}
	fmt.Fprintf(w, "synchronizer %v, pid %d, up %s\n", st.Version["version"], st.PID, time.Since(st.StartedAt).Round(time.Second))
	fmt.Fprintf(w, "socket     %s (%d connections, %d subscribers, %d queued changes)\n",
		st.Socket, st.RPCRaw["connections"], st.RPCRaw["subscribers"], st.RPCRaw["queued_changes"])
	fmt.Fprintf(w, "database   %s (%d entities, change log seq %d..%d)\n", st.Database, st.Entities, st.ChangeLog.First, st.ChangeLog.Last)
	fmt.Fprintf(w, "config     %s (loaded %s, %d reloads)\n", orDash(st.Config.Path), ago(st.Config.LoadedAt), st.Config.Reloads)
	if st.Config.LastError != "" {
		fmt.Fprintf(w, "  last reload failed: %s\n", st.Config.LastError)
	}
	for _, m := range st.Config.NeedsRestart {
		fmt.Fprintf(w, "  %s\n", m)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "\nCOLLECTOR\tTYPE\tSTATE\tENTITIES\tLAST SUCCESS\tLAST ERROR")
	for _, c := range st.Collectors {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", c.Name, c.Type, c.State, c.entities(), ago(c.LastSuccess), orDash(c.LastError))
	}
	if len(st.Listeners) > 0 {
		fmt.Fprintln(tw, "\nLISTENER\tTYPE\tSTATE\tENTITIES\tLAST SUCCESS\tLAST ERROR")
		for _, l := range st.Listeners {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", l.Name, l.Type, l.State, l.entities(), ago(l.LastSuccess), orDash(l.LastError))
		}
	}
	var held []string
	for src, types := range st.Held {
		for typ, n := range types {
			held = append(held, fmt.Sprintf("%s\t%s\t%d", src, typ, n))
		}
	}
	if len(held) > 0 {
		sort.Strings(held)
		fmt.Fprintln(tw, "\nHELD DELETES\tTYPE\tCOUNT\t\t\t")
		for _, h := range held {
			fmt.Fprintln(tw, h+"\t\t\t")
		}
	}
	return tw.Flush()
}
