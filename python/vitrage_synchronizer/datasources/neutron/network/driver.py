"""neutron.network rows from the synchronizer for Vitrage's transformer."""
from vitrage_synchronizer.datasources import base


class NetworkDriver(base.SynchronizerDriver):
    """Reads neutron.network entities from the synchronizer."""

    DATASOURCE = 'neutron.network'
    FILTER_OUT = ('manager', '_info')
