"""nagios rows from the synchronizer for Vitrage's transformer."""
from vitrage_synchronizer.datasources import base


class NagiosDriver(base.SynchronizerDriver):
    """Reads nagios entities from the synchronizer."""

    DATASOURCE = 'nagios'
    FILTER_OUT = ()
