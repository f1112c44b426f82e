"""cinder.volume rows from the synchronizer for Vitrage's transformer."""
from vitrage_synchronizer.datasources import base


class CinderVolumeDriver(base.SynchronizerDriver):
    """Reads cinder.volume entities from the synchronizer."""

    DATASOURCE = 'cinder.volume'
    FILTER_OUT = ('manager',)
