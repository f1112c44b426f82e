"""A stdlib-only client for the synchronizer's JSON-RPC 2.0 Unix socket.

One JSON object per line in each direction. The client opens one connection
per call, so a sidecar restart between two calls needs no reconnect logic
and no state survives a broken connection.
"""
import itertools
import json
import socket
import time

#: The error code the sidecar answers ``changes`` with when ``since`` is
#: outside its retained change log, belongs to another database
#: (``database_id``) or to changes lost in an unclean stop: the caller must
#: resync with get_all.
RESYNC_NEEDED = -32001


class SidecarError(Exception):
    """The sidecar could not be reached or its answer was unusable."""


class RPCError(SidecarError):
    """The sidecar answered with a JSON-RPC error object."""

    def __init__(self, code, message, data=None):
        super().__init__('synchronizer: rpc error %s: %s' % (code, message))
        self.code = code
        self.message = message
        self.data = data


class Client(object):
    """Calls methods of a synchronizer listening on ``path``.

    ``timeout`` bounds connecting and each read of the answer (seconds).
    """

    _ids = itertools.count(1)

    def __init__(self, path, timeout=30.0):
        self.path = path
        self.timeout = timeout

    def _send(self, sock, req):
        """Connect ``sock`` to the sidecar and send ``req``, one line."""
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        sock.sendall(json.dumps(req).encode() + b'\n')

    def call(self, method, params=None):
        """Return the result of ``method``; raise SidecarError or RPCError."""
        req_id = next(self._ids)
        req = {'jsonrpc': '2.0', 'id': req_id, 'method': method,
               'params': params or {}}
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._send(sock, req)
            with sock.makefile('rb') as lines:
                for line in lines:
                    msg = json.loads(line)
                    # Notifications (no id) cannot arrive on a connection
                    # that never registered, but skip them all the same.
                    if msg.get('id') != req_id:
                        continue
                    if msg.get('error') is not None:
                        err = msg['error']
                        raise RPCError(err.get('code'), err.get('message'),
                                       err.get('data'))
                    return msg.get('result')
        except (OSError, ValueError) as e:
            raise SidecarError('synchronizer: %s %s: %s'
                               % (method, self.path, e)) from e
        finally:
            sock.close()
        raise SidecarError('synchronizer: %s %s: connection closed before '
                           'the answer' % (method, self.path))

    def wait_change(self, since, types=None, database_id=None, wait=5.0):
        """Wait up to ``wait`` seconds for a change of ``types`` after
        ``since``; return True as soon as one is there (or the sidecar asks
        for a resync or stops), False when none came.

        A ``register`` subscription from ``since``: the sidecar replays what
        is already in its log after ``since`` at once, then sends live
        changes. The connection is closed on return; the caller then reads
        the changes with ``changes`` as usual."""
        req_id = next(self._ids)
        params = {'since': since, 'types': list(types or [])}
        if database_id:
            params['database_id'] = database_id
        req = {'jsonrpc': '2.0', 'id': req_id, 'method': 'register',
               'params': params}
        deadline = time.monotonic() + wait
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._send(sock, req)
            with sock.makefile('rb') as lines:
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    sock.settimeout(left)
                    line = lines.readline()
                    if not line:
                        raise SidecarError('synchronizer: register %s: '
                                           'connection closed' % self.path)
                    msg = json.loads(line)
                    if msg.get('id') == req_id:
                        if msg.get('error') is not None:
                            err = msg['error']
                            raise RPCError(err.get('code'),
                                           err.get('message'),
                                           err.get('data'))
                        continue  # subscribed: wait for a notification
                    if msg.get('method') in ('change', 'resync', 'shutdown'):
                        return True
        except socket.timeout:
            return False
        except (OSError, ValueError) as e:
            raise SidecarError('synchronizer: register %s: %s'
                               % (self.path, e)) from e
        finally:
            sock.close()

    def get_all(self, types=None):
        """Return ``{"seq": N, "entities": [...], "database_id": ID}`` for
        ``types``."""
        return self.call('get_all', {'types': list(types or [])})

    def changes(self, since, types=None, limit=0, database_id=None):
        """Return ``{"changes": [...], "seq": M, "more": bool,
        "database_id": ID}``.

        Pass the ``database_id`` that came with ``since``: a seq of another
        database is then answered with RESYNC_NEEDED instead of being read
        as one of this database's."""
        params = {'since': since, 'types': list(types or [])}
        if limit:
            params['limit'] = limit
        if database_id:
            params['database_id'] = database_id
        return self.call('changes', params)

    def status(self):
        """Return the sidecar's status object."""
        return self.call('status')
