"""Our datasources against the real Vitrage and the real synchronizer.

Run by vitrage_test.go (make test) with Debian's /usr/bin/python3, which has
python3-vitrage. The synchronizer polls the fake cloud (Nova, Neutron,
Cinder, Heat samples), a static topology and a Nagios status.dat; Vitrage's
own parse_config loads our package, and its real DriverExec feeds its real
Processor(NXGraph) through our drivers.
"""
import os
import re
import shutil
import tempfile
import time
import unittest

import harness as H

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = 'f5dc173b-6804-445a-a6d8-c705dad5b5eb'   # the Nova sample's server
VM = '11111111-1111-4111-8111-111111111111'       # topology.yaml's
STACK = '3095aefc-09fb-4bc7-b1f0-f21a304e864c'    # the Heat sample's stack


def nagios_status(dest, critical):
    """Write status.dat with host1's "Dummy service" CRITICAL or OK."""
    with open(os.path.join(HERE, 'testdata', 'status.dat')) as f:
        text = f.read()
    now = int(time.time())
    text = re.sub(r'(info \{.*?created=)\d+', r'\g<1>%d' % now, text,
                  flags=re.S)

    def block(m):
        b = m.group(0)
        if 'host_name=host1' not in b:
            return b
        b = b.replace('has_been_checked=0', 'has_been_checked=1')
        b = re.sub(r'current_state=\d', 'current_state=%d'
                   % (2 if critical else 0), b)
        b = re.sub(r'last_check=\d+', 'last_check=%d' % now, b)
        return b.replace('plugin_output=\n', 'plugin_output=%s\n'
                         % ('DUMMY CRITICAL' if critical else 'DUMMY OK'))
    text = re.sub(r'servicestatus \{.*?\n\t\}', block, text, flags=re.S)
    tmp = dest + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, dest)


class VitrageIntegration(unittest.TestCase):
    """One scenario in steps: each test_N depends on the previous ones."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix='vitrage-sync-')
        cls.cloud = H.FakeCloud(H.need('FAKECLOUD_BINARY'),
                                os.path.join(cls.tmp, 'clouds.yaml'))
        shutil.copy(os.path.join(HERE, 'testdata', 'topology.yaml'), cls.tmp)
        # The stack comprises the server: a copy of Heat's sample resource
        # (an OS::Heat::RandomString, which Vitrage ignores) made a server.
        cls.cloud.control('add_resource', id=STACK,
                          resource_type='OS::Nova::Server',
                          physical_resource_id=SERVER, name='server')
        cls.status_dat = os.path.join(cls.tmp, 'status.dat')
        nagios_status(cls.status_dat, critical=True)
        cls.sidecar = H.Sidecar(H.need('SYNC_BINARY'), cls.tmp, '''
collectors:
  - {name: cloud, type: openstack, cloud: fakecloud, clouds_file: clouds.yaml,
     interval: 200ms}
  - {name: topology, type: static, path: topology.yaml, interval: 1s}
  - name: nagios
    type: nagios
    status_file: status.dat
    interval: 200ms
    host_mapping:
      - {nagios_host: "host", type: nova.host, name: "${nagios_host}"}
''')
        cls.sidecar.start()
        from vitrage_synchronizer import client
        cls.client = client.Client(cls.sidecar.socket, 5)
        # Every collector has polled once before Vitrage starts.
        H.wait_for('the first polls', lambda: len(
            cls.client.get_all()['entities']) >= 17)

        H.write_values_dir(os.path.join(cls.tmp, 'values'))
        conf = os.path.join(cls.tmp, 'vitrage.conf')
        H.write_vitrage_conf(conf, cls.tmp, cls.sidecar.socket)
        t = time.monotonic()
        from vitrage.common import config
        config.parse_config(['vitrage-graph', '--config-file', conf])
        cls.g = H.Graph()
        print('vitrage loaded in %.1f s' % (time.monotonic() - t))

    @classmethod
    def tearDownClass(cls):
        cls.sidecar.stop()
        cls.cloud.stop()
        if not os.environ.get("KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers --------------------------------------------------------------

    def driver(self, name):
        from vitrage.datasources import utils
        return utils.get_drivers_by_name([name])[0]

    def sidecar_state(self, key):
        typ = key.split(':', 1)[0]
        for e in self.client.get_all([typ])['entities']:
            if e['key'] == key:
                return e['state']
        return None

    def wait_sidecar(self, key, state):
        H.wait_for('%s %s at the sidecar' % (key, state),
                   lambda: self.sidecar_state(key) == state)

    def changes(self, name):
        before = len(self.g.events)
        n = self.g.exec.get_changes(name)
        return n, self.g.events[before:]

    def live_ids(self, typ):
        return sorted(v['id'] for v in self.g.live(typ))

    # -- the scenario ---------------------------------------------------------

    def test_01_loaded_through_parse_config(self):
        from oslo_config import cfg
        conf = cfg.CONF
        for t in H.VITRAGE_TYPES:
            self.assertTrue(conf[t].driver.startswith(
                'vitrage_synchronizer.datasources.'), t)
            # Vitrage's own, or (neutron) a subclass taking our deletes.
            self.assertTrue(conf[t].transformer.startswith(
                ('vitrage.datasources.',
                 'vitrage_synchronizer.datasources.neutron.transformers.')),
                t)
            self.assertEqual(conf[t].update_method, 'pull', t)
        from vitrage.datasources import utils
        self.assertEqual(sorted(utils.get_pull_drivers_names()),
                         sorted(H.VITRAGE_TYPES))

    def test_02_init_snapshot(self):
        t = time.process_time()
        self.g.exec.snapshot_get_all()
        print('init_snapshot: %d events, %.3f CPU s' % (
            len(self.g.events), time.process_time() - t))
        for e in self.g.events:
            self.assertEqual(e['vitrage_datasource_action'], 'init_snapshot')
        want = {
            'nova.zone': ['nova'],
            'nova.host': ['compute', 'host1', 'host2'],
            'nova.instance': [VM, SERVER],
            'neutron.network': ['22222222-2222-4222-8222-222222222222',
                                'd32019d3-bc6e-4319-9c1d-6722fc136a22',
                                'db193ab3-96e3-4cb3-8fc5-05f4296d0324'],
            # The sample's two router ports are left out, as Vitrage does.
            'neutron.port': ['33333333-3333-4333-8333-333333333333'],
            'cinder.volume': ['44444444-4444-4444-8444-444444444444',
                              'cb49b381-9012-40cb-b8ee-80c19a4801b5'],
            'heat.stack': ['3095aefc-09fb-4bc7-b1f0-f21a304e864c'],
            'switch': ['tor-1'],
            'openstack.cluster': ['OpenStack Cluster'],
        }
        for typ, ids in want.items():
            self.assertEqual(self.live_ids(typ), sorted(ids), typ)
        states = {(typ, i): self.g.vertex(typ, i)['state'] for typ, i in [
            ('nova.zone', 'nova'), ('nova.instance', VM),
            ('neutron.network', 'd32019d3-bc6e-4319-9c1d-6722fc136a22'),
            ('neutron.port', '33333333-3333-4333-8333-333333333333'),
            ('cinder.volume', '44444444-4444-4444-8444-444444444444'),
            ('heat.stack', '3095aefc-09fb-4bc7-b1f0-f21a304e864c'),
            ('switch', 'tor-1')]}
        self.assertEqual(list(states.values()), [
            'available', 'ACTIVE', 'ACTIVE', 'ACTIVE', 'in-use',
            'CREATE_COMPLETE', 'available'])
        server = self.g.vertex('nova.instance', SERVER)
        self.assertEqual(server['state'], 'ACTIVE')
        self.assertEqual(server['vitrage_aggregated_state'], 'ACTIVE')
        self.assertEqual(server['vitrage_operational_state'], 'OK')
        self.assertEqual(server['name'], 'new-server-test')
        self.assertEqual(self.g.vertex('cinder.volume', 'cb49b381-9012-40cb-'
                                       'b8ee-80c19a4801b5')['state'],
                         'creating')
        [alarm] = self.g.live('nagios')
        self.assertEqual((alarm['name'], alarm['severity'],
                          alarm['vitrage_aggregated_severity']),
                         ('Dummy service', 'CRITICAL', 'CRITICAL'))
        edges = self.g.edges()
        for e in [
                ('openstack.cluster:OpenStack Cluster', 'contains',
                 'nova.zone:nova'),
                ('nova.zone:nova', 'contains', 'nova.host:host1'),
                ('nova.zone:nova', 'contains', 'nova.host:host2'),
                ('nova.zone:nova', 'contains', 'nova.host:compute'),
                ('nova.host:compute', 'contains', 'nova.instance:' + VM),
                ('neutron.network:22222222-2222-4222-8222-222222222222',
                 'contains', 'neutron.port:33333333-3333-4333-8333-'
                 '333333333333'),
                ('neutron.port:33333333-3333-4333-8333-333333333333',
                 'attached', 'nova.instance:' + VM),
                ('cinder.volume:44444444-4444-4444-8444-444444444444',
                 'attached', 'nova.instance:' + VM),
                ('switch:tor-1', 'attached', 'nova.host:compute'),
                ('nagios:None', 'on', 'nova.host:host1')]:
            self.assertIn(e, edges)
        self.assertEqual(self.g.edges('comprised'), {
            ('heat.stack:' + STACK, 'comprised', 'nova.instance:' + SERVER)})

    def test_03_status_change(self):
        self.cloud.control('set_status', id=SERVER, status='ERROR')
        self.wait_sidecar('nova.instance:' + SERVER, 'ERROR')
        n, events = self.changes('nova.instance')
        self.assertEqual(n, 1)
        self.assertEqual(events[0]['vitrage_datasource_action'], 'snapshot')
        v = self.g.vertex('nova.instance', SERVER)
        self.assertEqual((v['state'], v['vitrage_aggregated_state'],
                          v['vitrage_operational_state']),
                         ('ERROR', 'ERROR', 'ERROR'))
        # Nothing changed since: nothing sent.
        self.assertEqual(self.changes('nova.instance')[0], 0)

    def test_04_same_second(self):
        """Two changes of one server within a second are both applied."""
        dates, starts = [], []
        t = time.monotonic()
        for status in ('PAUSED', 'ACTIVE'):
            self.cloud.control('set_status', id=SERVER, status=status)
            self.wait_sidecar('nova.instance:' + SERVER, status)
            starts.append(time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
            n, events = self.changes('nova.instance')
            self.assertEqual(n, 1)
            dates.append(events[0]['vitrage_sample_date'])
            self.assertEqual(self.g.vertex('nova.instance', SERVER)['state'],
                             status)
        # The second call usually starts in the second of the first one's
        # date, and waits for the next (test_driver proves it every time).
        print('two changes in %.2f s, calls at %s, sample dates %s' % (
            time.monotonic() - t, starts, dates))
        self.assertLess(dates[0], dates[1])

    def test_05_server_removed(self):
        self.cloud.control('remove', collection='servers', id=SERVER)
        H.wait_for('the server gone from the sidecar',
                   lambda: self.sidecar_state('nova.instance:' + SERVER)
                   is None)
        n, events = self.changes('nova.instance')
        self.assertEqual(n, 1)
        self.assertEqual(events[0]['vitrage_event_type'], 'delete_entity')
        v = self.g.vertex('nova.instance', SERVER)
        self.assertTrue(v['vitrage_is_deleted'])
        self.assertEqual(self.live_ids('nova.instance'), [VM])

    def test_06_sidecar_down(self):
        """Unreachable: nothing raised, nothing deleted, graph kept."""
        live = len(self.g.live())
        self.sidecar.kill9()
        for name in H.VITRAGE_TYPES:
            self.assertEqual(self.driver(name).get_changes('update'), [])
            self.assertEqual(self.g.exec.get_changes(name), 0)
            # get_all raises: DriverExec logs it and skips its sweep of
            # outdated vertices.
            self.assertEqual(self.g.exec.get_all(name, 'snapshot'), 0)
        self.assertEqual(len(self.g.live()), live)

    def test_07_sidecar_restarted(self):
        """Changes made while the sidecar was down arrive once."""
        ids = self.cloud.control('add_servers', n=2)['ids']
        nagios_status(self.status_dat, critical=False)
        self.sidecar.start()
        H.wait_for('the new servers at the sidecar', lambda: all(
            self.sidecar_state('nova.instance:' + i) == 'ACTIVE'
            for i in ids))
        H.wait_for('the alarm gone at the sidecar', lambda: not
                   self.client.get_all(['nagios'])['entities'])
        n, events = self.changes('nova.instance')
        self.assertEqual(n, 2)
        self.assertEqual(sorted(e['id'] for e in events), sorted(ids))
        self.assertEqual(self.changes('nova.instance')[0], 0)
        self.assertEqual(self.live_ids('nova.instance'), sorted(ids + [VM]))
        n, events = self.changes('nagios')
        self.assertEqual(n, 1)
        self.assertEqual(self.g.live('nagios'), [])
        self.__class__.new_ids = ids

    def test_08_vitrage_restarted(self):
        """A new driver (a restarted Vitrage) goes on from the saved seq."""
        from vitrage.datasources import utils
        old = self.driver('nova.instance')
        utils.drivers.pop('nova.instance')
        new = self.driver('nova.instance')
        self.assertIsNot(old, new)
        self.assertEqual(self.changes('nova.instance')[0], 0)
        self.assertEqual(new._seq, old._seq)
        self.cloud.control('set_status', id=self.new_ids[0], status='SHUTOFF')
        self.wait_sidecar('nova.instance:' + self.new_ids[0], 'SHUTOFF')
        n, events = self.changes('nova.instance')
        self.assertEqual((n, events[0]['id']), (1, self.new_ids[0]))

    def test_09_resync(self):
        """After -32001 the driver sends a full snapshot, with deletes."""
        gone = self.new_ids[0]  # known to this driver since test_08
        self.cloud.control('remove', collection='servers', id=gone)
        H.wait_for('the server gone from the sidecar',
                   lambda: self.sidecar_state('nova.instance:' + gone)
                   is None)
        drv = self.driver('nova.instance')
        drv._seq = 10 ** 9  # as if the sidecar's database were replaced
        n, events = self.changes('nova.instance')
        self.assertEqual(n, 3)  # two live servers and one delete
        deletes = [e['id'] for e in events
                   if e.get('vitrage_event_type') == 'delete_entity']
        self.assertEqual(deletes, [gone])
        self.assertTrue(self.g.vertex('nova.instance', gone)
                        ['vitrage_is_deleted'])
        self.assertEqual(self.live_ids('nova.instance'),
                         sorted([VM, self.new_ids[1]]))
        self.assertLess(drv._seq, 10 ** 9)
        self.assertEqual(self.changes('nova.instance')[0], 0)

    def test_10_periodic_snapshot(self):
        """The periodic get_all: full after a resync, then only changes,
        and Vitrage's sweep of unrefreshed vertices runs only after a full
        one."""
        live = sorted(v['id'] for v in self.g.live('nova.instance'))
        time.sleep(1.05 - time.time() % 1)  # every vertex is older now
        self.assertEqual(self.g.exec.get_all('nova.instance', 'snapshot'),
                         len(live))  # full, asked for by test_09's resync
        time.sleep(1.05 - time.time() % 1)
        self.assertEqual(self.g.exec.get_all('nova.instance', 'snapshot'), 0)
        self.assertEqual(self.live_ids('nova.instance'), live)
        # The whole periodic round, every datasource: nothing deleted.
        before = {v.vertex_id: v for v in self.g.live()}
        self.g.exec.snapshot_get_all('snapshot')
        gone = [before[i] for i in set(before) - {v.vertex_id
                                                  for v in self.g.live()}]
        self.assertEqual(gone, [])
        # The ConsistencyEnforcer leaves our vertices alone: they are not
        # refreshed when unchanged.
        from vitrage.entity_graph.consistency.consistency_enforcer import \
            ConsistencyEnforcer
        ce = ConsistencyEnforcer(self.g.graph, self.g.process)
        self.assertEqual(ce.datasources_to_mark_deleted, [])


    def test_11_stack_resource_added(self):
        """A server added to the stack: one heat.stack change, one edge."""
        live = self.new_ids[1]
        self.cloud.control('add_resource', id=STACK,
                           resource_type='OS::Nova::Server',
                           physical_resource_id=live, name='server2')
        key = 'nova.instance:' + live

        def linked():
            [st] = self.client.get_all(['heat.stack'])['entities']
            return key in [link['key'] for link in st.get('links') or []]
        H.wait_for('the resource at the sidecar', linked)
        n, events = self.changes('heat.stack')
        self.assertEqual(n, 1)
        self.assertIn(('heat.stack:' + STACK, 'comprised', key),
                      self.g.edges('comprised'))

    def test_12_network_removed(self):
        """A Neutron delete goes through Vitrage's network transformer
        (9.0 looks the id up by event type: ours takes delete_entity; the
        port transformer likewise, test_driver checks its tables)."""
        for coll, typ, ident in (
                ('networks', 'neutron.network',
                 'd32019d3-bc6e-4319-9c1d-6722fc136a22'),):
            self.assertIsNotNone(self.g.vertex(typ, ident))
            self.cloud.control('remove', collection=coll, id=ident)
            H.wait_for('%s gone from the sidecar' % ident,
                       lambda: self.sidecar_state(typ + ':' + ident) is None)
            n, events = self.changes(typ)
            self.assertEqual(n, 1, typ)
            self.assertEqual(events[0]['vitrage_event_type'], 'delete_entity')
            self.assertTrue(self.g.vertex(typ, ident)['vitrage_is_deleted'],
                            typ)
            self.assertNotIn(ident, self.live_ids(typ))


if __name__ == '__main__':
    unittest.main(verbosity=2)
