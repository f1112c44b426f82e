"""Read a synchronizer change stream from anywhere.

An ``amqp-stream`` publisher of the sidecar appends every committed change
to a RabbitMQ stream (publishers/README.md in the Go tree): the body is the
change object of the contract, headers ``seq`` and ``database_id`` say where
it belongs. Publishing is at least once, so this reader drops a seq it has
already delivered (per database id). Stream offsets are not seqs: a reader
that starts after seq ``since`` finds the offset by a short binary search
over offsets, then skips ``seq <= since``.

Needs Debian's python3-kombu (and its py-amqp transport) only.

    from vitrage_synchronizer.stream import StreamReader
    for m in StreamReader('amqp://guest:guest@broker:5672/', 'synchronizer.changes', since=42):
        if m.resync:
            ...  # changes m.lost_from..m.lost_through are gone: get_all
        else:
            handle(m.change)
"""
import json

import kombu


class StreamError(Exception):
    """The stream could not be read."""


class Message(object):
    """One delivered stream message: a change or a resync marker."""

    __slots__ = ('offset', 'seq', 'database_id', 'type', 'resync',
                 'lost_from', 'lost_through', 'body')

    def __init__(self, raw):
        props = getattr(raw, 'properties', {}) or {}
        h = props.get('application_headers') or {}
        try:
            self.offset = int(h['x-stream-offset'])
            self.seq = int(h['seq'])
        except (KeyError, TypeError, ValueError):
            raise StreamError('stream message without x-stream-offset/seq headers')
        self.database_id = h.get('database_id', '')
        self.type = h.get('type', '')
        self.resync = bool(h.get('resync', False))
        self.lost_from = int(h.get('lost_from', 0))
        self.lost_through = int(h.get('lost_through', 0))
        body = raw.body
        self.body = body if isinstance(body, bytes) else body.encode('utf-8')

    @property
    def change(self):
        """The change object (a dict), as the socket's notifications carry it."""
        return json.loads(self.body.decode('utf-8'))


class StreamReader(object):
    """Iterates over the changes of a stream after ``since`` (``since < 0``:
    from the first message), deduplicated by seq, following the stream."""

    def __init__(self, url, stream, since=-1, prefetch=1000, idle_timeout=None):
        self.url = url
        self.stream = stream
        self.since = since
        self.prefetch = prefetch
        #: stop iterating after this many seconds without a message (None:
        #: follow forever)
        self.idle_timeout = idle_timeout
        self._conn = None

    def close(self):
        if self._conn is not None:
            self._conn.release()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _consume(self, offset, prefetch, callback):
        ch = self._conn.channel()
        ch.basic_qos(0, prefetch, False)
        ch.basic_consume(queue=self.stream, no_ack=False, callback=callback,
                         arguments={'x-stream-offset': offset})
        return ch

    def _probe(self, offset):
        got = []
        ch = self._consume(offset, 1, got.append)
        try:
            try:
                self._conn.drain_events(timeout=2)
            except OSError:  # socket.timeout: nothing at or after offset
                return None
            return Message(got[0]) if got else None
        finally:
            ch.close()

    def _start_offset(self):
        # Seqs grow along the stream but for the resent tails after a
        # publisher reconnects, which only repeat seqs: a probe whose seq is
        # <= since still has every later seq after it.
        if self.since < 0:
            return 'first'
        first = self._probe('first')
        if first is None or first.seq > self.since:
            return 'first'
        last = self._probe('last')
        if last is None:
            return 'first'
        if last.seq <= self.since:
            return last.offset
        lo, hi = first.offset, last.offset
        while hi - lo > 1:
            mid = lo + (hi - lo) // 2
            m = self._probe(mid)
            if m is not None and m.seq <= self.since and m.offset < hi:
                lo = m.offset
            else:
                hi = mid
        return lo

    def __iter__(self):
        try:
            self._conn = kombu.Connection(self.url)
            self._conn.connect()
        except Exception as e:
            raise StreamError('stream %s: connect: %s' % (self.stream, e))
        queue = []
        ch = self._consume(self._start_offset(), self.prefetch, queue.append)
        last, dbid, n = self.since, None, 0
        try:
            while True:
                if not queue:
                    try:
                        self._conn.drain_events(timeout=self.idle_timeout)
                    except OSError:
                        if self.idle_timeout is not None:
                            return
                        raise
                    continue
                raw = queue.pop(0)
                n += 1
                if n % (self.prefetch // 2 + 1) == 0:
                    # Streams keep messages whatever is acknowledged:
                    # acks only return credit.
                    ch.basic_ack(raw.delivery_tag, multiple=True)
                m = Message(raw)
                if dbid is not None and m.database_id != dbid:
                    last = -1  # seqs start over in another database
                dbid = m.database_id
                if m.seq <= last:
                    continue
                last = m.seq
                yield m
        finally:
            self.close()


def main(argv=None):
    """python3 -m vitrage_synchronizer.stream URL NAME [SINCE]: print each
    change, one JSON object per line, as ``synchronizer watch --stream``."""
    import sys
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (2, 3):
        sys.stderr.write('usage: python3 -m vitrage_synchronizer.stream URL NAME [SINCE]\n')
        return 2
    since = int(argv[2]) if len(argv) == 3 else -1
    for m in StreamReader(argv[0], argv[1], since=since):
        if m.resync:
            sys.stderr.write('stream: changes %d..%d of database %s were pruned before they '
                             'were published; resynchronize\n' % (m.lost_from, m.lost_through, m.database_id))
            continue
        sys.stdout.write(m.body.decode('utf-8') + '\n')
        sys.stdout.flush()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
