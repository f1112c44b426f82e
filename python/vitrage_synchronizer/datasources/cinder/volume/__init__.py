"""The cinder.volume datasource read from the synchronizer."""
from vitrage_synchronizer.datasources.opts import datasource_opts

OPTS = datasource_opts(
    'cinder.volume',
    'vitrage_synchronizer.datasources.cinder.volume.driver.'
    'CinderVolumeDriver')
