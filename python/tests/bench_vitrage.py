"""Graph-process cost per interval: Vitrage's own nova.instance driver
against ours, with the real Vitrage DriverExec and Processor(NXGraph).

Not part of `make test` (it takes minutes). Run from python/tests:

  SYNC_BINARY=../../bin/synchronizer FAKECLOUD_BINARY=/tmp/fakecloud \
  PYTHONPATH=.. /usr/bin/python3 bench_vitrage.py [N]

Each mode runs in its own process (Vitrage's config is process-wide) and
prints CPU seconds (time.process_time of this process: the graph process)
and wall seconds, medians of 3.

* stock: Vitrage's InstanceDriver with its novaclient replaced by an object
  that decodes the same JSON body a Nova listing of N servers returns and
  builds novaclient-like resources (novaclient is not installed here; the
  decoding and object building are what novaclient does). HTTP time is not
  counted. Every snapshot re-sends all N rows.
* ours: the synchronizer polls the fake cloud (N servers); our driver's
  get_changes with nothing changed and with 1% changed, and its periodic
  get_all with periodic_snapshot = full (every row) and = changes.
"""
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import harness as H

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, '..', '..', 'openstack', 'openstacktest',
                       'testdata', 'nova', 'servers', 'v2.100',
                       'servers-details-resp.json')


def measure(fn, runs=3, prep=None):
    cpu, wall, out = [], [], None
    for i in range(runs):
        if prep:
            prep(i)
        c, w = time.process_time(), time.monotonic()
        out = fn()
        cpu.append(time.process_time() - c)
        wall.append(time.monotonic() - w)
    return {'cpu_s': round(statistics.median(cpu), 4),
            'wall_s': round(statistics.median(wall), 4), 'events': out}


def setup_vitrage(tmp, socket_path, ours):
    H.write_values_dir(os.path.join(tmp, 'values'))
    conf = os.path.join(tmp, 'vitrage.conf')
    H.write_vitrage_conf(conf, tmp, socket_path, types=['nova.instance'])
    if not ours:
        with open(conf) as f:
            text = f.read().replace(
                'path = vitrage_synchronizer.datasources,vitrage.datasources',
                'path = vitrage.datasources')
        with open(conf, 'w') as f:
            f.write(text)
    from vitrage.common import config
    config.parse_config(['vitrage-graph', '--config-file', conf])
    return H.Graph()


class _Resource(object):
    """What novaclient's Resource does with each listed server."""

    def __init__(self, manager, info):
        self.manager = manager
        self._info = info
        self._loaded = True
        for k, v in info.items():
            setattr(self, k, v)


class _FakeNova(object):
    def __init__(self):
        self.body = b''
        self.servers = self

    def list(self, search_opts=None):
        return [_Resource(self, s) for s in json.loads(self.body)['servers']]


def stock(n):
    with open(FIXTURE) as f:
        tmpl = json.load(f)['servers'][0]
    servers = []
    for i in range(n):
        s = copy.deepcopy(tmpl)
        s['id'], s['name'] = str(uuid.uuid4()), 'server-%d' % i
        servers.append(s)
    nova = _FakeNova()
    nova.body = json.dumps({'servers': servers}).encode()
    tmp = tempfile.mkdtemp(prefix='vitrage-bench-')
    g = setup_vitrage(tmp, '/nonexistent', ours=False)
    from vitrage.datasources import utils
    drv = utils.get_drivers_by_name(['nova.instance'])[0]
    drv._client = nova
    res = {'init_snapshot': measure(
        lambda: g.exec.get_all('nova.instance', 'init_snapshot'), runs=1)}
    res['snapshot_unchanged'] = measure(
        lambda: g.exec.get_all('nova.instance', 'snapshot'))

    def change(i):
        for s in servers[:n // 100]:
            s['status'] = 'PAUSED' if i % 2 == 0 else 'ACTIVE'
        nova.body = json.dumps({'servers': servers}).encode()
    res['snapshot_1pct_changed'] = measure(
        lambda: g.exec.get_all('nova.instance', 'snapshot'), prep=change)
    assert len(g.live('nova.instance')) == n, len(g.live('nova.instance'))
    return res


def ours(n):
    tmp = tempfile.mkdtemp(prefix='vitrage-bench-')
    cloud = H.FakeCloud(H.need('FAKECLOUD_BINARY'),
                        os.path.join(tmp, 'clouds.yaml'), servers=n - 1,
                        page_size=1000)
    sc = H.Sidecar(H.need('SYNC_BINARY'), tmp, '''
collectors:
  - {name: cloud, type: openstack, cloud: fakecloud, clouds_file: clouds.yaml,
     types: [nova.instance], interval: 1h}
''')
    sc.start()
    try:
        from vitrage_synchronizer import client
        cli = client.Client(sc.socket, 60)
        H.wait_for('%d servers at the sidecar' % n, lambda: len(
            cli.get_all(['nova.instance'])['entities']) == n, timeout=120)
        ids = cloud.control('ids', collection='servers')['ids']
        g = setup_vitrage(tmp, sc.socket, ours=True)
        res = {'init_snapshot': measure(
            lambda: g.exec.get_all('nova.instance', 'init_snapshot'),
            runs=1)}
        from oslo_config import cfg
        cfg.CONF.set_override('periodic_snapshot', 'full', 'synchronizer')
        res['get_all_full_snapshot'] = measure(
            lambda: g.exec.get_all('nova.instance', 'snapshot'))
        cfg.CONF.set_override('periodic_snapshot', 'changes', 'synchronizer')
        res['get_all_changes_unchanged'] = measure(
            lambda: g.exec.get_all('nova.instance', 'snapshot'))
        res['changes_unchanged'] = measure(
            lambda: g.exec.get_changes('nova.instance'))

        def change(i):
            seq = cli.get_all(['nova.zone'])['seq']
            for sid in ids[:n // 100]:
                cloud.control('set_status', id=sid,
                              status='PAUSED' if i % 2 == 0 else 'ACTIVE')
            cli.call('collect', {'name': 'cloud'})
            H.wait_for('the changes at the sidecar', lambda: len(
                cli.changes(seq, ['nova.instance'])['changes']) >= n // 100,
                timeout=60)
            time.sleep(1)  # not measured: keep the sample-date wait out
        res['changes_1pct_changed'] = measure(
            lambda: g.exec.get_changes('nova.instance'), prep=change)
        assert len(g.live('nova.instance')) == n
        return res
    finally:
        sc.stop()
        cloud.stop()


def main():
    if len(sys.argv) > 2:
        n = int(sys.argv[2])
        print(json.dumps({sys.argv[1]: (stock if sys.argv[1] == 'stock'
                                        else ours)(n)}))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    for mode in ('stock', 'ours'):
        out = subprocess.run([sys.executable, __file__, mode, str(n)],
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr[-3000:])
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == '__main__':
    main()
