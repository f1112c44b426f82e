package collectors

import (
	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/openstack"
)

// openstackSettings is a collector entry of type openstack: the common keys
// and the openstack package's own (cloud, auth, region, interface, types,
// request_timeout, retries, ...), all decoded strictly.
type openstackSettings struct {
	config.Common     `yaml:",inline"`
	openstack.Options `yaml:",inline"`
}

func init() {
	registerDecoded("openstack", func(s Settings, st *openstackSettings) (Collector, error) {
		c, err := openstack.New(st.Options, s.Dir, s.Logger)
		if err != nil {
			return nil, err
		}
		return openstackCollector{c, st.Options.Files(s.Dir)}, nil
	})
}

// openstackCollector is an openstack collector with the files its options
// made it read.
type openstackCollector struct {
	*openstack.Collector
	files []string
}

func (c openstackCollector) Files() []string { return c.files }

// Compile-time checks that the openstack collector offers status and close.
var (
	_ StatusReporter  = (*openstack.Collector)(nil)
	_ Closer          = (*openstack.Collector)(nil)
	_ TypeFilter      = (*openstack.Collector)(nil)
	_ TrafficReporter = (*openstack.Collector)(nil)
	_ FileReader      = openstackCollector{}
)
