"""Names shared with Vitrage, spelled out so that the row builders can be
tested without importing Vitrage (they equal vitrage.common.constants)."""

ENTITY_TYPE = 'vitrage_entity_type'
DATASOURCE_ACTION = 'vitrage_datasource_action'
SAMPLE_DATE = 'vitrage_sample_date'
EVENT_TYPE = 'vitrage_event_type'
DELETE_ENTITY = 'delete_entity'
SNAPSHOT = 'snapshot'
SAMPLE_DATE_FORMAT = '%Y-%m-%dT%H:%M:%SZ'

NOVA_INSTANCE = 'nova.instance'
NOVA_HOST = 'nova.host'
NOVA_ZONE = 'nova.zone'
NEUTRON_NETWORK = 'neutron.network'
NEUTRON_PORT = 'neutron.port'
CINDER_VOLUME = 'cinder.volume'
HEAT_STACK = 'heat.stack'
NAGIOS = 'nagios'
STATIC = 'static'

#: The datasources this package replaces the driver of.
ALL = (NOVA_INSTANCE, NOVA_HOST, NOVA_ZONE, NEUTRON_NETWORK, NEUTRON_PORT,
       CINDER_VOLUME, HEAT_STACK, NAGIOS, STATIC)
