"""The neutron.network datasource read from the synchronizer."""
from vitrage_synchronizer.datasources.opts import datasource_opts

OPTS = datasource_opts(
    'neutron.network',
    'vitrage_synchronizer.datasources.neutron.network.driver.'
    'NetworkDriver',
    transformer='vitrage_synchronizer.datasources.neutron.transformers.'
    'NetworkTransformer')
