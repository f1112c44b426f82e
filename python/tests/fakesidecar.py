"""A fake synchronizer socket for the driver's unit tests: get_all and
changes over the same JSON-RPC lines as the real one, from a list."""
import json
import os
import socketserver
import tempfile
import threading
import time


class FakeSidecar(object):
    """Serves ``entities`` and a change log on a Unix socket."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='fakesidecar-')
        self.path = os.path.join(self.dir, 's.sock')
        self.entities = {}   # key -> entity
        self.log = []        # changes, seq from 1
        self.pruned = 0      # changes up to this seq are gone
        self.database_id = 'db-1'
        self.calls = []
        self.register = True  # False: an old sidecar without subscriptions
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                for line in self.rfile:
                    req = json.loads(line)
                    fake.calls.append((req['method'], req.get('params')))
                    try:
                        res = {'result': fake.answer(req['method'],
                                                     req.get('params') or {})}
                    except RPCFault as e:
                        res = {'error': {'code': e.code, 'message': str(e)}}
                    res.update(jsonrpc='2.0', id=req['id'])
                    self.wfile.write(json.dumps(res).encode() + b'\n')
                    if req['method'] == 'register' and 'result' in res:
                        self.notify(req.get('params') or {})
                        return

            def notify(self, p):
                """The subscription's changes, replayed then live (polled
                from the log), until the client hangs up."""
                types, sent = p.get('types') or None, p.get('since', 0)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    out = [c for c in fake.log[sent:]
                           if not types or c['type'] in types]
                    sent = len(fake.log)
                    if out:
                        msg = {'jsonrpc': '2.0', 'method': 'change',
                               'params': {'subscription': 'sub-1',
                                          'changes': out}}
                        try:
                            self.wfile.write(json.dumps(msg).encode() + b'\n')
                            self.wfile.flush()
                        except OSError:
                            return
                    time.sleep(0.02)

        class Server(socketserver.ThreadingUnixStreamServer):
            daemon_threads = True      # a register connection may linger
            block_on_close = False

        self.server = Server(self.path, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    @property
    def seq(self):
        return len(self.log)

    def put(self, typ, ident, state='ACTIVE', action=None, **fields):
        key = '%s:%s' % (typ, ident)
        ent = {'key': key, 'type': typ, 'id': ident, 'name': ident,
               'parent_key': '', 'state': state, 'project': '',
               'timestamp': '2026-01-01T00:00:00Z', 'source': 'test',
               'data': {}, 'links': []}
        ent.update(fields)
        if action is None:
            action = 'update' if key in self.entities else 'create'
        self.entities[key] = ent
        self.log.append(dict(ent, seq=self.seq + 1, action=action))
        return ent

    def delete(self, key):
        ent = self.entities.pop(key)
        self.log.append(dict(ent, seq=self.seq + 1, action='delete'))

    def answer(self, method, p):
        types = p.get('types') or None
        if method == 'get_all':
            return {'seq': self.seq, 'database_id': self.database_id,
                    'entities': [e for e in self.entities.values()
                                 if not types or e['type'] in types]}
        if method == 'changes':
            since = p['since']
            if p.get('database_id', self.database_id) != self.database_id:
                raise RPCFault(-32001, 'database_id is not this database')
            if since < self.pruned or since > self.seq:
                raise RPCFault(-32001, 'since is outside the retained log')
            limit = p.get('limit') or 100000
            out = [c for c in self.log[since:]
                   if not types or c['type'] in types][:limit]
            more = len(out) == limit and out[-1]['seq'] < self.seq
            return {'changes': out, 'seq': out[-1]['seq'] if more
                    else self.seq, 'more': more,
                    'database_id': self.database_id}
        if method == 'register':
            if not self.register:
                raise RPCFault(-32601, 'no method ' + method)
            since = p.get('since', self.seq)
            if p.get('database_id', self.database_id) != self.database_id:
                raise RPCFault(-32001, 'database_id is not this database')
            if since < self.pruned or since > self.seq:
                raise RPCFault(-32001, 'since is outside the retained log')
            return {'subscription': 'sub-1', 'seq': self.seq,
                    'database_id': self.database_id}
        raise RPCFault(-32601, 'no method ' + method)


class RPCFault(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
