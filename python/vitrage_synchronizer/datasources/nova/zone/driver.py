"""nova.zone rows from the synchronizer for Vitrage's transformer."""
from vitrage_synchronizer.datasources import base


class ZoneDriver(base.SynchronizerDriver):
    """Reads nova.zone entities from the synchronizer."""

    DATASOURCE = 'nova.zone'
    FILTER_OUT = ('manager', '_info')
