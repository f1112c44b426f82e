"""The static datasource read from the synchronizer."""
from oslo_config import cfg

from vitrage_synchronizer.datasources.opts import datasource_opts

OPTS = datasource_opts(
    'static',
    'vitrage_synchronizer.datasources.static.driver.'
    'StaticDriver',
    extra=[cfg.ListOpt(
        'entity_types', default=[],
        help='Sidecar entity types shown through the static datasource. '
             'Empty: every type that is not a datasource listed in '
             '[datasources] types (switch, rack, ...). Entities of a listed '
             'type (nova.host, ...) go to that datasource instead.')])
