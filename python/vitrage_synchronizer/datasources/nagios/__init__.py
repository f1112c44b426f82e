"""The nagios datasource read from the synchronizer."""
from vitrage_synchronizer.datasources.opts import datasource_opts

OPTS = datasource_opts(
    'nagios',
    'vitrage_synchronizer.datasources.nagios.driver.'
    'NagiosDriver')
