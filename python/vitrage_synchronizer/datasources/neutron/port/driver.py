"""neutron.port rows from the synchronizer for Vitrage's transformer."""
from vitrage_synchronizer.datasources import base


class PortDriver(base.SynchronizerDriver):
    """Reads neutron.port entities from the synchronizer."""

    DATASOURCE = 'neutron.port'
    FILTER_OUT = ('manager', '_info')
