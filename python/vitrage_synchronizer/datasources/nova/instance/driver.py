"""nova.instance rows from the synchronizer for Vitrage's transformer."""
from vitrage_synchronizer.datasources import base


class InstanceDriver(base.SynchronizerDriver):
    """Reads nova.instance entities from the synchronizer."""

    DATASOURCE = 'nova.instance'
    FILTER_OUT = ('manager', 'OS-EXT-SRV-ATTR:user_data', '_info')
