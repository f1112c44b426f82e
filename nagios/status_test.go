package nagios

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func readFixture(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/status.dat")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseFixture(t *testing.T) {
	st, err := ReadStatusFile("testdata/status.dat")
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, b := range st.Blocks {
		types = append(types, b.Type)
	}
	want := []string{"info", "programstatus", "hoststatus", "hoststatus", "servicestatus", "servicestatus",
		"contactstatus", "contactstatus", "hostcomment", "servicecomment"}
	if !reflect.DeepEqual(types, want) {
		t.Fatalf("blocks %v, want %v", types, want)
	}
	if got := st.Info()["version"]; got != "3.1.0" {
		t.Errorf("info.version %q", got)
	}
	if got := st.Created(); !got.Equal(time.Unix(1242341791, 0)) {
		t.Errorf("created %v", got)
	}
	// Values after the first "=", empty values, and the comment blocks'
	// space-indented lines.
	sc := st.OfType("servicecomment")[0]
	if sc.Fields["comment_data"] != "Test Comment" || sc.Fields["author"] != "Nagios Admin" ||
		sc.Fields["service_description"] != "Dummy service" {
		t.Errorf("servicecomment %v", sc.Fields)
	}
	if v, ok := st.OfType("hoststatus")[0].Fields["check_command"]; !ok || v != "" {
		t.Errorf("empty check_command: %q, %v", v, ok)
	}
	if sc.Line != 323 {
		t.Errorf("servicecomment line %d, want 323", sc.Line)
	}

	hosts, services, err := st.Checks()
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 2 || len(services) != 2 {
		t.Fatalf("%d hosts, %d services", len(hosts), len(services))
	}
	// The fixture's checks have never run (has_been_checked=0): pending,
	// not OK, and no alarm either way.
	wantSvc := Check{Host: "host2", Service: "Dummy service", State: "PENDING", Hard: true,
		CurrentAttempt: 1, MaxAttempts: 3}
	if !reflect.DeepEqual(services[1], wantSvc) {
		t.Errorf("service %+v,\nwant %+v", services[1], wantSvc)
	}
	if hosts[0].Host != "host1" || hosts[0].State != "PENDING" || hosts[0].Problem() {
		t.Errorf("host %+v", hosts[0])
	}
}

// TestParseEveryCut cuts the fixture at every byte: a parse that succeeds
// never holds a block that lacks some of its lines.
func TestParseEveryCut(t *testing.T) {
	b := readFixture(t)
	full, err := ParseStatus(b)
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	for k := 0; k < len(b); k++ {
		st, err := ParseStatus(b[:k])
		if err != nil {
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("cut at %d: %v does not wrap ErrTruncated", k, err)
			}
			continue
		}
		ok++
		for i, blk := range st.Blocks {
			if !reflect.DeepEqual(blk, full.Blocks[i]) {
				t.Fatalf("cut at %d: block %d (%s) is partial", k, i, blk.Type)
			}
		}
	}
	if ok == 0 {
		t.Fatal("no cut parsed: the test tests nothing")
	}
}

func TestParseErrors(t *testing.T) {
	fixture := string(readFixture(t))
	svc := strings.Index(fixture, "servicestatus {")
	tests := []struct {
		name, in, want string
		truncated      bool
	}{
		{"empty file", "", "no info block", true},
		{"header only", "# NAGIOS STATUS FILE\n\n", "no info block", true},
		{"cut inside a service block", fixture[:svc+60], `block "servicestatus" of line 168 is not closed`, true},
		{"closing brace missing", strings.Replace(fixture, "\tscheduled_downtime_depth=0\n\t}\n\nservicestatus", "\tscheduled_downtime_depth=0\n\nservicestatus", 1),
			`line 167: block "servicestatus" opened inside block "hoststatus" of line 112`, true},
		{"no programstatus", "info {\ncreated=1\n}\n", "no programstatus block", true},
		{"text outside a block", "info {\n}\ngarbage here\n", `line 3: "garbage here" outside a block`, false},
		{"continuation before any key", "info {\nno equals sign\n}\n", `line 2: "no equals sign" is not key=value`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseStatus([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if errors.Is(err, ErrTruncated) != tc.truncated {
				t.Fatalf("errors.Is(ErrTruncated) = %v, want %v", !tc.truncated, tc.truncated)
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	in := "info {\n\tcreated=5\n}\nprogramstatus {\n}\nservicestatus {\n" +
		"\tplugin_output=a=b {\n" + // "=" in the value, "{" at the end: not a block
		"\tlong_plugin_output=first\n" +
		"second line\n" + // a raw line break continues the value
		"# a comment line is skipped\n" +
		"\tperformance_data=x\r\n" +
		"\tperformance_data=y\n" + // the last of a repeated key wins
		"}\n"
	st, err := ParseStatus([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	f := st.OfType("servicestatus")[0].Fields
	want := map[string]string{"plugin_output": "a=b {", "long_plugin_output": "first\nsecond line", "performance_data": "y"}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("fields %q, want %q", f, want)
	}
}

func TestUnescape(t *testing.T) {
	tests := map[string]string{
		``:                `` + "",
		`plain`:           "plain",
		`a\nb`:            "a\nb",
		`C:\\temp\nline2`: "C:\\temp\nline2",
		`odd \t stays`:    `odd \t stays`,
		`trailing \`:      `trailing \`,
	}
	for in, want := range tests {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestChecksErrors(t *testing.T) {
	base := "info {\n}\nprogramstatus {\n}\n"
	svc := "\tcurrent_state=%s\n\thas_been_checked=1\n\tstate_type=1\n\tproblem_has_been_acknowledged=0\n" +
		"\tlast_check=0\n\tcurrent_attempt=1\n\tmax_attempts=1\n\tscheduled_downtime_depth=0\n"
	tests := []struct{ name, block, want string }{
		{"no host_name", "servicestatus {\n\tservice_description=x\n" + strings.Replace(svc, "%s", "0", 1) + "}\n", "host_name: missing"},
		{"no description", "servicestatus {\n\thost_name=h\n" + strings.Replace(svc, "%s", "0", 1) + "}\n", "no service_description"},
		{"state out of range", "hoststatus {\n\thost_name=h\n" + strings.Replace(svc, "%s", "3", 1) + "}\n", "unknown state 3"},
		{"state not a number", "hoststatus {\n\thost_name=h\n" + strings.Replace(svc, "%s", "x", 1) + "}\n", "current_state"},
		{"field missing", "hoststatus {\n\thost_name=h\n\tcurrent_state=0\n}\n", "missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := ParseStatus([]byte(base + tc.block))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := st.Checks(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
