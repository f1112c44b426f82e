package collectors

import (
	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/nagios"
)

// nagiosSettings is a collector entry of type nagios: the common keys and
// the nagios package's own (status_file or url, user, password,
// password_env, host_mapping, host_mapping_file, max_age), decoded strictly.
type nagiosSettings struct {
	config.Common  `yaml:",inline"`
	nagios.Options `yaml:",inline"`
}

func init() {
	registerDecoded("nagios", func(s Settings, st *nagiosSettings) (Collector, error) {
		return nagios.New(st.Options, st.Timeout.D(), s.Dir, s.Logger)
	})
}

// Compile-time checks that the nagios collector fits the framework.
var (
	_ Collector      = (*nagios.Collector)(nil)
	_ StatusReporter = (*nagios.Collector)(nil)
	_ Checker        = (*nagios.Collector)(nil)
	_ FileReader     = (*nagios.Collector)(nil)
)
