"""The nova.instance datasource read from the synchronizer."""
from vitrage_synchronizer.datasources.opts import datasource_opts

OPTS = datasource_opts(
    'nova.instance',
    'vitrage_synchronizer.datasources.nova.instance.driver.'
    'InstanceDriver')
