package nagios

import (
	"fmt"
	"strconv"
	"time"
)

// Check is the current result of one host or service check, the same
// whichever way it was read (status file or JSON CGI), so that switching a
// collector from one to the other changes no alarm.
type Check struct {
	Host string
	// Service is the service description; "" for a host check.
	Service string
	// State is the state word: OK, WARNING, CRITICAL, UNKNOWN for a service,
	// UP, DOWN, UNREACHABLE for a host, PENDING for either when Nagios has
	// not checked it yet.
	State string
	// Hard is true for a hard state (max_attempts reached), false for soft.
	Hard         bool
	PluginOutput string
	LongOutput   string // plugin output after the first line
	LastCheck    time.Time
	// LastStateChange is when the check entered its current state: unlike
	// LastCheck it stays put while the state holds.
	LastStateChange time.Time
	CurrentAttempt  int
	MaxAttempts     int
	Acknowledged    bool
	DowntimeDepth   int
}

// Problem reports whether the check is an alarm: a service that is not OK or
// a host that is not UP. A pending check (never run) is not a problem.
func (c Check) Problem() bool {
	switch c.State {
	case "OK", "UP", "PENDING":
		return false
	}
	return true
}

// status.dat's current_state values (include/statusdata.h, STATE_* of the
// plugin API for services, HOST_* for hosts).
var (
	serviceStates = []string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}
	hostStates    = []string{"UP", "DOWN", "UNREACHABLE"}
)

// Checks turns the hoststatus and servicestatus blocks into checks. A block
// without its name, or with a state number Nagios does not write, is an
// error: guessing would risk a wrong delete.
func (st *Status) Checks() (hosts, services []Check, err error) {
	for _, b := range st.Blocks {
		switch b.Type {
		case "hoststatus":
			c, err := blockCheck(b, hostStates)
			if err != nil {
				return nil, nil, err
			}
			hosts = append(hosts, c)
		case "servicestatus":
			c, err := blockCheck(b, serviceStates)
			if err != nil {
				return nil, nil, err
			}
			if c.Service = b.Fields["service_description"]; c.Service == "" {
				return nil, nil, fmt.Errorf("nagios: servicestatus of line %d: no service_description", b.Line)
			}
			services = append(services, c)
		}
	}
	return hosts, services, nil
}

func blockCheck(b Block, states []string) (Check, error) {
	f := b.Fields
	bad := func(key string, err error) (Check, error) {
		return Check{}, fmt.Errorf("nagios: %s of line %d: %s: %w", b.Type, b.Line, key, err)
	}
	c := Check{
		Host:         f["host_name"],
		PluginOutput: Unescape(f["plugin_output"]),
		LongOutput:   Unescape(f["long_plugin_output"]),
	}
	if c.Host == "" {
		return bad("host_name", fmt.Errorf("missing"))
	}
	ints := map[string]*int{}
	var state, checked, stateType, ack, lastCheck int
	ints["current_state"] = &state
	ints["has_been_checked"] = &checked
	ints["state_type"] = &stateType
	ints["problem_has_been_acknowledged"] = &ack
	ints["last_check"] = &lastCheck
	ints["current_attempt"] = &c.CurrentAttempt
	ints["max_attempts"] = &c.MaxAttempts
	ints["scheduled_downtime_depth"] = &c.DowntimeDepth
	for key, p := range ints {
		v, ok := f[key]
		if !ok {
			return bad(key, fmt.Errorf("missing"))
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return bad(key, err)
		}
		*p = n
	}
	if state < 0 || state >= len(states) {
		return bad("current_state", fmt.Errorf("unknown state %d", state))
	}
	c.State = states[state]
	if checked == 0 {
		c.State = "PENDING"
	}
	c.Hard = stateType == 1
	c.Acknowledged = ack != 0
	if lastCheck > 0 {
		c.LastCheck = time.Unix(int64(lastCheck), 0).UTC()
	}
	// Optional: older or hand-made status files may lack it.
	if v, ok := f["last_state_change"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return bad("last_state_change", err)
		}
		if n > 0 {
			c.LastStateChange = time.Unix(n, 0).UTC()
		}
	}
	return c, nil
}
