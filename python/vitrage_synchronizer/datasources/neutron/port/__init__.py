"""The neutron.port datasource read from the synchronizer."""
from vitrage_synchronizer.datasources.opts import datasource_opts

OPTS = datasource_opts(
    'neutron.port',
    'vitrage_synchronizer.datasources.neutron.port.driver.'
    'PortDriver',
    transformer='vitrage_synchronizer.datasources.neutron.transformers.'
    'PortTransformer')
