"""The driver's own logic against a fake sidecar socket (no processes).

Needs Vitrage importable (the driver is a Vitrage DriverBase)."""
import datetime
import json
import os
import shutil
import tempfile
import threading
import time
import unittest

from oslo_config import cfg

import fakesidecar
import vitrage_synchronizer.datasources  # noqa: registers [synchronizer]
from vitrage_synchronizer.datasources.heat.stack.driver import \
    HeatStackDriver
from vitrage_synchronizer.datasources.nagios.driver import NagiosDriver
from vitrage_synchronizer.datasources.nova.instance.driver import \
    InstanceDriver

CONF = cfg.CONF


class DriverTest(unittest.TestCase):

    def setUp(self):
        self.sc = fakesidecar.FakeSidecar()
        self.state = tempfile.mkdtemp(prefix='driver-state-')
        for k, v in {'socket': self.sc.path, 'state_dir': self.state,
                     'timeout': 2, 'changes_limit': 2,
                     'periodic_snapshot': 'changes',
                     'changes_wait': 0.2}.items():
            CONF.set_override(k, v, 'synchronizer')
        self.sc.put('nova.instance', 'a')
        self.sc.put('nova.instance', 'b', parent_key='nova.host:h1')

    def tearDown(self):
        CONF.clear_override('periodic_snapshot', 'synchronizer')
        CONF.clear_override('changes_wait', 'synchronizer')
        self.sc.close()
        shutil.rmtree(self.sc.dir, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)

    def test_get_all_rows(self):
        d = InstanceDriver()
        rows = d.get_all('init_snapshot')
        self.assertEqual(sorted(r['id'] for r in rows), ['a', 'b'])
        b = [r for r in rows if r['id'] == 'b'][0]
        self.assertEqual(b['OS-EXT-SRV-ATTR:host'], 'h1')
        self.assertEqual(b['vitrage_entity_type'], 'nova.instance')
        self.assertEqual(b['vitrage_datasource_action'], 'init_snapshot')
        self.assertTrue(d.should_delete_outdated_entities())
        with open(os.path.join(self.state, 'nova.instance.json')) as f:
            self.assertEqual(json.load(f),
                             {'seq': 2, 'database_id': 'db-1'})

    def test_get_changes_answers_when_a_change_comes(self):
        # Vitrage calls get_changes every changes_interval (1 s); each call
        # waits for a change and answers as soon as one is there.
        CONF.set_override('changes_wait', 10, 'synchronizer')
        d = InstanceDriver()
        d.get_all('init_snapshot')
        timer = threading.Timer(0.3, lambda: self.sc.put(
            'nova.instance', 'a', state='SHUTOFF'))
        timer.start()
        t0 = time.monotonic()
        rows = d.get_changes('update')
        took = time.monotonic() - t0
        timer.join()
        self.assertEqual([(r['id'], r['status']) for r in rows],
                         [('a', 'SHUTOFF')])
        self.assertLess(took, 3, 'get_changes waited past the change')
        self.assertGreaterEqual(took, 0.25)
        # A change already in the log: no wait at all.
        self.sc.put('nova.instance', 'b', state='PAUSED')
        t0 = time.monotonic()
        rows = d.get_changes('update')
        self.assertEqual([r['id'] for r in rows], ['b'])
        self.assertLess(time.monotonic() - t0, 2)

    def test_get_changes_waits_at_most_changes_wait(self):
        CONF.set_override('changes_wait', 0.5, 'synchronizer')
        d = InstanceDriver()
        d.get_all('init_snapshot')
        # Changes of other types do not end the wait.
        self.sc.put('nova.host', 'h1')
        t0 = time.monotonic()
        self.assertEqual(d.get_changes('update'), [])
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        self.assertLess(time.monotonic() - t0, 2)

    def test_get_changes_without_subscriptions_does_not_wait(self):
        # A sidecar that answers register with an error: read at once.
        CONF.set_override('changes_wait', 10, 'synchronizer')
        self.sc.register = False
        d = InstanceDriver()
        d.get_all('init_snapshot')
        t0 = time.monotonic()
        self.assertEqual(d.get_changes('update'), [])
        self.assertLess(time.monotonic() - t0, 2)

    def test_neutron_transformers_take_deletes(self):
        from vitrage_synchronizer.datasources.neutron import transformers
        for cls, tables in (
                (transformers.NetworkTransformer, ['UPDATE_ID_PROPERTY']),
                (transformers.PortTransformer, ['UPDATE_ID_PROPERTY',
                                                'FIXED_IPS_PROPERTY'])):
            for name in tables:
                table = getattr(cls, name)
                self.assertEqual(table['delete_entity'], table[None],
                                 (cls, name))
                # Vitrage's own class is left as it was.
                self.assertNotIn('delete_entity',
                                 getattr(cls.__mro__[1], name))

    def test_changes_paged_and_collapsed(self):
        d = InstanceDriver()
        d.get_all('init_snapshot')
        for s in ('PAUSED', 'ACTIVE', 'ERROR'):
            self.sc.put('nova.instance', 'a', state=s)
        self.sc.put('nova.instance', 'c')
        self.sc.delete('nova.instance:b')
        rows = d.get_changes('update')
        # 5 changes over 3 pages (limit 2); the last of each key.
        self.assertEqual([(r['id'], r['status'], r.get('vitrage_event_type'))
                          for r in rows],
                         [('a', 'ERROR', None), ('c', 'ACTIVE', None),
                          ('b', 'ACTIVE', 'delete_entity')])
        self.assertEqual({r['vitrage_datasource_action'] for r in rows},
                         {'snapshot'})
        self.assertEqual(len([c for c in self.sc.calls
                              if c[0] == 'changes']), 3)
        self.assertEqual(d.get_changes('update'), [])

    def test_sample_dates_strictly_increase(self):
        d = InstanceDriver()
        dates = [d.get_all('init_snapshot')[0]['vitrage_sample_date']]
        for s in ('PAUSED', 'ACTIVE', 'PAUSED'):
            self.sc.put('nova.instance', 'a', state=s)
            dates.append(d.get_changes('update')[0]['vitrage_sample_date'])
        self.assertEqual(dates, sorted(set(dates)))

    def test_seq_survives_restart(self):
        InstanceDriver().get_all('init_snapshot')
        self.sc.put('nova.instance', 'a', state='ERROR')
        rows = InstanceDriver().get_changes('update')  # a new process
        self.assertEqual([(r['id'], r['status']) for r in rows],
                         [('a', 'ERROR')])

    def test_no_seq_means_full_snapshot(self):
        rows = InstanceDriver().get_changes('update')
        self.assertEqual(sorted(r['id'] for r in rows), ['a', 'b'])

    def test_failed_start_then_full_snapshot(self):
        """Vitrage starts from scratch while the sidecar is down: once it
        is back, get_changes sends everything, not the changes after the
        seq saved by the previous run."""
        InstanceDriver().get_all('init_snapshot')  # the previous run
        d = InstanceDriver()
        CONF.set_override('socket', self.sc.path + '.down', 'synchronizer')
        with self.assertRaises(Exception):
            d.get_all('init_snapshot')
        self.assertEqual(d.get_changes('update'), [])
        CONF.set_override('socket', self.sc.path, 'synchronizer')
        self.assertEqual(sorted(r['id'] for r in d.get_changes('update')),
                         ['a', 'b'])
        self.assertEqual(d.get_changes('update'), [])

    def test_replaced_database_means_full_snapshot(self):
        """The sidecar's database was replaced (a new database id): the
        saved seq means nothing there, so the driver resyncs, even where
        the seq is within the new log."""
        InstanceDriver().get_all('init_snapshot')  # seq 2 of db-1
        self.sc.database_id = 'db-2'
        self.sc.put('nova.instance', 'c')
        d = InstanceDriver()  # a new process, from the state file
        rows = d.get_changes('update')
        self.assertEqual(sorted(r['id'] for r in rows), ['a', 'b', 'c'])
        changes = [p for m, p in self.sc.calls if m == 'changes']
        self.assertEqual(changes[0]['database_id'], 'db-1')
        with open(os.path.join(self.state, 'nova.instance.json')) as f:
            self.assertEqual(json.load(f)['database_id'], 'db-2')

    def test_unreadable_state_file(self):
        with open(os.path.join(self.state, 'nova.instance.json'), 'w') as f:
            f.write('{not json')
        rows = InstanceDriver().get_changes('update')
        self.assertEqual(len(rows), 2)  # a full snapshot, no exception

    def test_resync_sends_snapshot_with_deletes(self):
        d = InstanceDriver()
        d.get_all('init_snapshot')
        self.sc.delete('nova.instance:a')
        self.sc.put('nova.instance', 'c')
        self.sc.pruned = self.sc.seq  # the log lost what we missed
        d._seq = 1
        rows = d.get_changes('update')
        self.assertEqual(sorted((r['id'], r.get('vitrage_event_type'))
                                for r in rows),
                         [('a', 'delete_entity'), ('b', None), ('c', None)])
        # The next periodic get_all is full, so Vitrage sweeps.
        self.assertEqual(len(d.get_all('snapshot')), 2)
        self.assertTrue(d.should_delete_outdated_entities())

    def test_periodic_get_all_changes_mode(self):
        d = InstanceDriver()
        d.get_all('init_snapshot')
        self.assertEqual(d.get_all('snapshot'), [])
        self.assertFalse(d.should_delete_outdated_entities())
        self.assertFalse(InstanceDriver.should_delete_outdated_entities())
        self.sc.put('nova.instance', 'a', state='ERROR')
        self.assertEqual([r['status'] for r in d.get_all('snapshot')],
                         ['ERROR'])

    def test_periodic_get_all_full_mode(self):
        CONF.set_override('periodic_snapshot', 'full', 'synchronizer')
        d = InstanceDriver()
        d.get_all('init_snapshot')
        self.assertEqual(len(d.get_all('snapshot')), 2)
        self.assertTrue(d.should_delete_outdated_entities())
        self.assertTrue(InstanceDriver.should_delete_outdated_entities())

    def test_not_ready(self):
        self.sc.entities.clear()
        self.sc.log.clear()
        d = InstanceDriver()
        with self.assertRaises(Exception):
            d.get_all('init_snapshot')  # never "everything is gone"
        self.assertEqual(d.get_changes('update'), [])

    def test_unreachable(self):
        d = InstanceDriver()
        d.get_all('init_snapshot')
        self.sc.close()
        os.unlink(self.sc.path)
        t = time.monotonic()
        self.assertEqual(d.get_changes('update'), [])
        with self.assertRaises(Exception):
            d.get_all('snapshot')
        self.assertLess(time.monotonic() - t, 2)

    def test_nagios_recovery_is_a_delete(self):
        self.sc.put('nagios', 'nagios:host1:load', state='CRITICAL',
                    name='load', parent_key='nova.host:host1',
                    data={'service': 'load', 'plugin_output': 'high',
                          'last_state_change': '2026-01-01T00:00:00Z'})
        d = NagiosDriver()
        [row] = d.get_all('init_snapshot')
        self.assertEqual((row['resource_type'], row['resource_name'],
                          row['service'], row['status']),
                         ('nova.host', 'host1', 'load', 'CRITICAL'))
        # Vitrage's last_check (local wall-clock time) is when the state
        # began: the sidecar keeps the moving last check out of data.
        began = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        self.assertEqual(row['last_check'],
                         began.astimezone().strftime('%Y-%m-%d %H:%M:%S'))
        self.sc.delete('nagios:nagios:host1:load')
        [row] = d.get_changes('update')
        self.assertEqual((row['status'], row['vitrage_event_type']),
                         ('OK', 'delete_entity'))

    def test_heat_stack_from_the_bus_keeps_its_resources(self):
        # A stack a notification updated has no data.resources but keeps
        # its comprised links: the row's resources come from them.
        self.sc.put('heat.stack', 's1', state='UPDATE_COMPLETE',
                    name='web', data={'stack_identity': 's1'},
                    links=[{'key': 'nova.instance:vm1',
                            'relation': 'comprised'},
                           {'key': 'cinder.volume:v1',
                            'relation': 'comprised'},
                           {'key': 'nova.instance:other',
                            'relation': 'attached'}])
        [row] = HeatStackDriver().get_all('init_snapshot')
        self.assertEqual(row['resources'], [
            {'resource_type': 'OS::Cinder::Volume',
             'physical_resource_id': 'v1'},
            {'resource_type': 'OS::Nova::Server',
             'physical_resource_id': 'vm1'}])

    def test_static_takes_only_unlisted_types(self):
        from vitrage import opts
        from vitrage_synchronizer.datasources import static
        from vitrage_synchronizer.datasources.static.driver import \
            StaticDriver
        for group, options in opts.list_opts():
            if group == 'datasources':
                CONF.register_opts(list(options), group=group)
        CONF.register_opts(static.OPTS, group='static')
        CONF.set_override('types', ['nova.instance', 'static'],
                          'datasources')
        self.addCleanup(CONF.clear_override, 'types', 'datasources')
        self.sc.put('switch', 'sw1', links=[
            {'key': 'nova.instance:a', 'relation': 'attached'}])
        d = StaticDriver()
        [row] = d.get_all('init_snapshot')
        self.assertEqual((row['type'], row['id']), ('switch', 'sw1'))
        self.assertEqual(row['relationships'], [{
            'source': 'switch:sw1', 'relationship_type': 'attached',
            'target': {'static_id': 'nova.instance:a',
                       'type': 'nova.instance', 'id': 'a'}}])
        # Changes and deletes of other datasources' entities are not ours.
        self.sc.put('nova.instance', 'a', state='ERROR')
        self.sc.delete('nova.instance:b')
        self.assertEqual(d.get_changes('update'), [])
        self.sc.delete('switch:sw1')
        [row] = d.get_changes('update')
        self.assertEqual((row['id'], row['vitrage_event_type']),
                         ('sw1', 'delete_entity'))


if __name__ == '__main__':
    unittest.main()
