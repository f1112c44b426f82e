"""The heat.stack datasource read from the synchronizer."""
from vitrage_synchronizer.datasources.opts import datasource_opts

OPTS = datasource_opts(
    'heat.stack',
    'vitrage_synchronizer.datasources.heat.stack.driver.'
    'HeatStackDriver')
