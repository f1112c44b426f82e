"""Vitrage's neutron transformers, able to take our delete rows.

Vitrage 9.0's network and port transformers look the entity's id (and a
port's fixed IPs) up in tables keyed by the row's ``vitrage_event_type``,
which hold only Neutron's notification types and None (a snapshot row). A
delete row of ours carries ``vitrage_event_type: delete_entity``, as the
other types' do, and raised ``KeyError: 'delete_entity'`` there: the
vertex stayed. These subclasses read a delete row as a snapshot row;
nothing else differs.
"""
from vitrage.common.constants import GraphAction
from vitrage.datasources.neutron.network import transformer as network
from vitrage.datasources.neutron.port import transformer as port


def _with_deletes(cls):
    for name in dir(cls):
        table = getattr(cls, name)
        if isinstance(table, dict) and None in table:
            table = dict(table)
            table[GraphAction.DELETE_ENTITY] = table[None]
            setattr(cls, name, table)
    return cls


@_with_deletes
class NetworkTransformer(network.NetworkTransformer):
    pass


@_with_deletes
class PortTransformer(port.PortTransformer):
    pass
