"""heat.stack rows from the synchronizer for Vitrage's transformer."""
from vitrage_synchronizer.datasources import base


class HeatStackDriver(base.SynchronizerDriver):
    """Reads heat.stack entities from the synchronizer."""

    DATASOURCE = 'heat.stack'
    FILTER_OUT = ('manager', '_info')
