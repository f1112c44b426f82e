"""Processes and a real Vitrage graph for the integration tests.

Starts the fake cloud (openstack/openstacktest/cmd/fakecloud) and the real
synchronizer binary, writes a vitrage.conf, and builds Vitrage's real
DriverExec and Processor(NXGraph) the way vitrage-graph does.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

VITRAGE_TYPES = ['nova.zone', 'nova.host', 'nova.instance', 'neutron.network',
                 'neutron.port', 'cinder.volume', 'heat.stack', 'nagios',
                 'static']


def need(var):
    val = os.environ.get(var)
    if not val:
        raise RuntimeError('%s is not set: run these tests through '
                           '`go test -run TestVitrage ./e2e` (make test)' % var)
    return val


def wait_for(what, cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for ' + what)
        time.sleep(0.02)


class FakeCloud(object):
    """The fixture-serving fake OpenStack, as a process."""

    def __init__(self, binary, clouds_yaml, servers=0, page_size=2):
        args = [binary, '--clouds-yaml', clouds_yaml,
                '--page-size', str(page_size)]
        if servers:
            args += ['--servers', str(servers)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE)
        self.url = self.proc.stdout.readline().decode().strip()
        if not self.url.startswith('http'):
            raise RuntimeError('fakecloud did not start')

    def control(self, op, **kw):
        kw['op'] = op
        req = urllib.request.Request(self.url + '/_control',
                                     data=json.dumps(kw).encode(),
                                     method='POST')
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.proc.stdout.close()


class Sidecar(object):
    """The real synchronizer binary on a config in ``dir``."""

    def __init__(self, binary, dir, config):
        self.binary, self.dir = binary, dir
        self.socket = os.path.join(dir, 's.sock')
        self.config = os.path.join(dir, 'synchronizer.yaml')
        with open(self.config, 'w') as f:
            f.write('socket: s.sock\ndatabase: s.db\n' + config)
        self.log = os.path.join(dir, 'synchronizer.log')
        self.proc = None

    def start(self):
        if os.path.exists(self.socket):
            os.unlink(self.socket)  # left by kill -9
        with open(self.log, 'ab') as log:
            self.proc = subprocess.Popen(
                [self.binary, 'serve', '--config', self.config],
                stdout=log, stderr=log)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError('synchronizer exited: ' + self.tail())
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(self.socket)
                return True
            except OSError:
                return False
            finally:
                s.close()
        wait_for('the synchronizer socket', up)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self):
        with open(self.log, errors='replace') as f:
            return f.read()[-3000:]


def write_values_dir(dest):
    """Vitrage's test datasources_values plus the types it lacks.

    Debian installs no /etc/vitrage; its test resources have values for
    nova.* and nagios, so the other types get default.yaml's table.
    """
    src = '/usr/lib/python3/dist-packages/vitrage/tests/resources/' \
          'datasources_values'
    shutil.copytree(src, dest)
    for t in ('neutron.network', 'neutron.port', 'cinder.volume',
              'heat.stack', 'static'):
        shutil.copy(os.path.join(src, 'default.yaml'),
                    os.path.join(dest, t + '.yaml'))


def write_vitrage_conf(path, tmp, socket_path, types=VITRAGE_TYPES):
    with open(path, 'w') as f:
        f.write('''[DEFAULT]
transport_url = fake://
log_file = {tmp}/vitrage.log
[datasources]
types = {types}
path = vitrage_synchronizer.datasources,vitrage.datasources
snapshots_interval = 600
[entity_graph]
datasources_values_dir = {tmp}/values
[synchronizer]
socket = {socket}
state_dir = {tmp}/state
timeout = 5
'''.format(tmp=tmp, socket=socket_path, types=','.join(types)))


class Persist(object):
    """DriverExec stores the graph after a snapshot; nothing to store."""

    def store_graph(self):
        pass


class Graph(object):
    """Vitrage's real DriverExec feeding its real Processor(NXGraph)."""

    def __init__(self):
        from vitrage.entity_graph.driver_exec import DriverExec
        from vitrage.entity_graph.processor.processor import Processor
        from vitrage.graph.driver.networkx_graph import NXGraph
        self.graph = NXGraph('Entity Graph')
        self.processor = Processor(self.graph)
        self.exec = DriverExec(self.process, Persist(), self.graph)
        self.events = []

    def process(self, events):
        # What EventsCoordination.handle_multiple_low_priority does.
        n = 0
        for n, e in enumerate(events or [], 1):
            self.events.append(e)
            self.processor.process_event(e)
        return n

    def vertex(self, typ, ident):
        for v in self.graph.get_vertices(
                vertex_attr_filter={'vitrage_type': typ}):
            if v.get('id') == ident:
                return v
        return None

    def live(self, typ=None):
        filt = {'vitrage_is_deleted': False}
        if typ:
            filt['vitrage_type'] = typ
        return [v for v in self.graph.get_vertices(vertex_attr_filter=filt)
                if not v.get('vitrage_is_placeholder')]

    def edges(self, label=None):
        """{(source type:id, label, target type:id)} of live edges."""
        out = set()
        for v in self.graph.get_vertices():
            for e in self.graph.get_edges(v.vertex_id):
                if e.source_id != v.vertex_id or e.get('vitrage_is_deleted'):
                    continue
                if label and e.label != label:
                    continue
                t = self.graph.get_vertex(e.target_id)
                out.add(('%s:%s' % (v['vitrage_type'], v.get('id')), e.label,
                         '%s:%s' % (t['vitrage_type'], t.get('id'))))
        return out
