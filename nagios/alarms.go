package nagios

import (
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// alarms turns the problems among the checks into alarm entities. A check
// that is OK, UP or PENDING gives none, so an alarm whose service recovered
// is missing from the snapshot and the engine deletes it.
//
// Entity: type "nagios", id "<host>:<service>" (key "nagios:<host>:<service>",
// as Vitrage's ALARM:nagios:<resource>:<service>), or "<host>:HOST" for a
// host that is DOWN or UNREACHABLE; name the service description (HOST for a
// host); state the Nagios state word; parent_key the mapped resource.
func (c *Collector) alarms(hosts, services []Check) []entity.Entity {
	out := make([]entity.Entity, 0)
	seen := map[string]bool{}
	add := func(ch Check, service string) {
		id := ch.Host + ":" + service
		if seen[id] {
			c.log.Warn("nagios: duplicate alarm key, keeping the first", "key", entity.MakeKey(Type, id))
			return
		}
		seen[id] = true
		out = append(out, entity.Entity{
			Key:       entity.MakeKey(Type, id),
			Type:      Type,
			ID:        id,
			Name:      service,
			ParentKey: c.mapper.ParentKey(ch.Host),
			State:     ch.State,
			Data:      alarmData(ch, service),
		})
	}
	// Hosts first: a service literally named HOST must not take the key of
	// its host's alarm.
	for _, h := range hosts {
		if h.Problem() {
			add(h, HostService)
		}
	}
	for _, s := range services {
		if s.Problem() {
			add(s, s.Service)
		}
	}
	return out
}

// alarmData is the alarm's data: the same fields from the status file and
// the CGI, so that the two ways of reading agree.
func alarmData(ch Check, service string) map[string]any {
	stateType := "SOFT"
	if ch.Hard {
		stateType = "HARD"
	}
	// last_check is left out: it moves on every check, and an alarm
	// whose state holds must not be an update every poll.
	since := ""
	if !ch.LastStateChange.IsZero() {
		since = ch.LastStateChange.UTC().Format(time.RFC3339)
	}
	return map[string]any{
		"host":                     ch.Host,
		"service":                  service,
		"status":                   ch.State,
		"state_type":               stateType,
		"plugin_output":            ch.PluginOutput,
		"long_plugin_output":       ch.LongOutput,
		"last_state_change":        since,
		"current_attempt":          ch.CurrentAttempt,
		"max_attempts":             ch.MaxAttempts,
		"acknowledged":             ch.Acknowledged,
		"scheduled_downtime_depth": ch.DowntimeDepth,
	}
}
