"""Sidecar entities to the raw rows Vitrage's own transformers read.

Each builder starts from a copy of the entity's ``data`` (the source's own
object: a Nova server, a Neutron port, ...) and then sets the keys the
transformer reads from the entity's normalized fields. The normalized fields
are the sidecar's contract; ``data`` may come from a REST listing, a bus
notification or a static file, so the keys the transformer needs cannot be
taken from it blindly. Builders also work on a stub without ``data`` (the
driver remembers only stubs to build the delete rows of entities it missed).

A builder returns None for an entity its Vitrage datasource does not show
(for instance a router port, which Vitrage's own port driver leaves out).
"""
import datetime

from vitrage_synchronizer.datasources import constants as C


def split_key(key):
    """Return (type, id) of a ``<type>:<id>`` key; ("", "") for ""."""
    if not key:
        return '', ''
    typ, _, ident = key.partition(':')
    return typ, ident


def _base(entity):
    return dict(entity.get('data') or {})


def _named(entity, name='name', status='status', project='tenant_id'):
    """A copy of ``data`` with the entity's id, name, state and project under
    the keys its transformer reads them from."""
    row = _base(entity)
    row['id'] = entity['id']
    row[name] = entity.get('name', '')
    row[status] = entity.get('state', '')
    row[project] = entity.get('project', '')
    return row


def _linked(entity, typ, relation=None):
    """Ids of the link targets of type ``typ`` (and ``relation`` if set)."""
    out = []
    for link in entity.get('links') or []:
        ltyp, lid = split_key(link.get('key', ''))
        if ltyp == typ and (relation is None or
                            link.get('relation') == relation):
            out.append(lid)
    return out


def nova_instance(entity):
    row = _named(entity)
    _, host = split_key(entity.get('parent_key', ''))
    row['OS-EXT-SRV-ATTR:host'] = host or None
    if row['status'].lower() == 'deleted':
        # What Vitrage's own InstanceDriver does with a deleted server.
        row[C.EVENT_TYPE] = C.DELETE_ENTITY
    return row


def nova_host(entity):
    row = _base(entity)
    row['host'] = entity['id']
    _, zone = split_key(entity.get('parent_key', ''))
    row['zone'] = zone or None
    return row


def nova_zone(entity):
    if entity['id'] == 'internal':
        return None  # Vitrage's ZoneDriver drops it too.
    row = _base(entity)
    row['zoneName'] = entity['id']
    row['zoneState'] = {'available': entity.get('state') == 'available'}
    if not isinstance(row.get('hosts'), dict):
        row['hosts'] = {}
    return row


def neutron_network(entity):
    row = _named(entity)
    row.setdefault('updated_at', None)
    return row


def neutron_port(entity):
    row = _named(entity)
    owner = row.get('device_owner')
    if owner is not None and 'compute' not in owner:
        return None  # Vitrage shows only ports of instances.
    _, net = split_key(entity.get('parent_key', ''))
    row['network_id'] = net or None
    servers = _linked(entity, C.NOVA_INSTANCE)
    if servers:
        row['device_id'] = servers[0]
    row.setdefault('device_id', None)
    row.setdefault('fixed_ips', [])
    row.setdefault('binding:host_id', None)
    row.setdefault('updated_at', None)
    return row


def cinder_volume(entity):
    row = _named(entity, name='display_name',
                 project='os-vol-tenant-attr:tenant_id')
    servers = _linked(entity, C.NOVA_INSTANCE)
    have = {a.get('server_id') for a in row.get('attachments') or []
            if isinstance(a, dict)}
    if set(servers) != have:
        row['attachments'] = [{'server_id': s} for s in servers]
    row.setdefault('attachments', [])
    row.setdefault('created_at', None)
    row.setdefault('size', None)
    row.setdefault('volume_type', None)
    return row


#: The heat resource type of each entity type a stack comprises (the four
#: Vitrage's heat driver maps).
HEAT_RESOURCE_TYPES = {
    C.NOVA_INSTANCE: 'OS::Nova::Server',
    C.CINDER_VOLUME: 'OS::Cinder::Volume',
    C.NEUTRON_NETWORK: 'OS::Neutron::Net',
    C.NEUTRON_PORT: 'OS::Neutron::Port',
}


def heat_stack(entity):
    row = _named(entity, name='stack_name', status='stack_status',
                 project='project')
    row.setdefault('creation_time', None)
    # The openstack collector puts the stack's resources of the four types
    # Vitrage maps in data.resources (its "comprised" edges). A stack from a
    # bus notification has none until the next poll, but keeps its
    # comprised links: the resources are rebuilt from them.
    if not isinstance(row.get('resources'), list):
        row['resources'] = [
            {'resource_type': HEAT_RESOURCE_TYPES[typ],
             'physical_resource_id': rid}
            for typ in sorted(HEAT_RESOURCE_TYPES)
            for rid in _linked(entity, typ, 'comprised')]
    if row['stack_status'].lower() in ('delete_complete', 'deleted',
                                       'delete_in_progress'):
        row[C.EVENT_TYPE] = C.DELETE_ENTITY
    return row


#: Sidecar alarm states that Vitrage's nagios datasource does not know (it
#: reads services only), mapped to the nagios service status it does know.
NAGIOS_HOST_STATES = {'DOWN': 'CRITICAL', 'UNREACHABLE': 'UNKNOWN'}


def _local_time(ts):
    """RFC 3339 UTC to the local wall-clock time Nagios' status page shows.

    Vitrage's nagios transformer converts ``last_check`` from local time to
    UTC, so it must be given local time.
    """
    if not ts:
        return datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S')
    try:
        t = datetime.datetime.fromisoformat(ts.replace('Z', '+00:00'))
    except ValueError:
        return ts
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t.astimezone().strftime('%Y-%m-%d %H:%M:%S')


def nagios(entity):
    rtype, rname = split_key(entity.get('parent_key', ''))
    if not rtype:
        return None  # no host_mapping rule: Vitrage drops it too.
    data = entity.get('data') or {}
    state = entity.get('state', '')
    return {
        C.ENTITY_TYPE: C.NAGIOS,
        'resource_type': rtype,
        'resource_name': rname,
        'service': data.get('service') or entity.get('name', ''),
        'status': NAGIOS_HOST_STATES.get(state, state),
        'status_info': data.get('plugin_output', ''),
        # The sidecar leaves the time of the last check out (it moves at
        # every check); when the state began is the alarm's time.
        'last_check': _local_time(data.get('last_state_change') or
                                  entity.get('timestamp')),
        'duration': data.get('duration'),
        'attempt': '%s/%s' % (data.get('current_attempt', ''),
                              data.get('max_attempts', '')),
    }


def static(entity):
    """A row of Vitrage's static datasource (static/driver.py _pack)."""
    data = dict(entity.get('data') or {})
    static_id = data.get('static_id') or entity['key']
    row = {'static_id': static_id, 'type': entity['type'],
           'id': entity['id'], 'name': entity.get('name', ''),
           'state': entity.get('state', '')}
    data.pop('relationships', None)
    row['metadata'] = {k: v for k, v in data.items()
                       if k not in ('static_id', 'type', 'id')}
    rels = []
    ptyp, pid = split_key(entity.get('parent_key', ''))
    if ptyp:
        rels.append({'source': {'static_id': entity['parent_key'],
                                'type': ptyp, 'id': pid},
                     'target': static_id, 'relationship_type': 'contains'})
    for link in entity.get('links') or []:
        ltyp, lid = split_key(link.get('key', ''))
        rels.append({'source': static_id,
                     'target': {'static_id': link.get('key'),
                                'type': ltyp, 'id': lid},
                     'relationship_type': link.get('relation') or 'related'})
    row['relationships'] = rels
    return row


#: Row builder per Vitrage datasource name.
BUILDERS = {
    C.NOVA_INSTANCE: nova_instance,
    C.NOVA_HOST: nova_host,
    C.NOVA_ZONE: nova_zone,
    C.NEUTRON_NETWORK: neutron_network,
    C.NEUTRON_PORT: neutron_port,
    C.CINDER_VOLUME: cinder_volume,
    C.HEAT_STACK: heat_stack,
    C.NAGIOS: nagios,
    C.STATIC: static,
}


def delete_row(builder, stub):
    """The row that makes Vitrage soft-delete what ``stub`` described."""
    row = builder(stub)
    if row is None:
        return None
    if builder is nagios:
        row['status'] = 'OK'  # the alarm transformer deletes on OK
    row[C.EVENT_TYPE] = C.DELETE_ENTITY
    return row
