"""The nova.zone datasource read from the synchronizer."""
from vitrage_synchronizer.datasources.opts import datasource_opts

OPTS = datasource_opts(
    'nova.zone',
    'vitrage_synchronizer.datasources.nova.zone.driver.'
    'ZoneDriver')
