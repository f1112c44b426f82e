"""nova.host rows from the synchronizer for Vitrage's transformer."""
from vitrage_synchronizer.datasources import base


class HostDriver(base.SynchronizerDriver):
    """Reads nova.host entities from the synchronizer."""

    DATASOURCE = 'nova.host'
    FILTER_OUT = ('manager',)
