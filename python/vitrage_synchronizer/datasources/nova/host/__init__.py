"""The nova.host datasource read from the synchronizer."""
from vitrage_synchronizer.datasources.opts import datasource_opts

OPTS = datasource_opts(
    'nova.host',
    'vitrage_synchronizer.datasources.nova.host.driver.'
    'HostDriver')
