"""static rows from the synchronizer for Vitrage's transformer.

The sidecar's static collector reads the same YAML as Vitrage's static
datasource. Each sidecar entity goes to exactly one Vitrage datasource: one
of a type listed in ``[datasources] types`` to that type's driver, any other
one (a switch, a rack) here, with its containment and links as static
relationships.
"""
from oslo_config import cfg

from vitrage_synchronizer.datasources import base

CONF = cfg.CONF


class StaticDriver(base.SynchronizerDriver):
    """Reads the entities no other listed datasource shows."""

    DATASOURCE = 'static'
    FILTER_OUT = ()

    def sidecar_types(self):
        return list(CONF.static.entity_types)

    def accepts(self, entity):
        if CONF.static.entity_types:
            return entity['type'] in CONF.static.entity_types
        return entity['type'] not in CONF.datasources.types
