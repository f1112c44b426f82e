"""Read a synchronizer change stream from anywhere.

An ``amqp-stream`` publisher of the sidecar appends every committed change
to a RabbitMQ stream (publishers/README.md in the Go tree): the body is the
change object of the contract, headers ``seq`` and ``database_id`` say where
it belongs. Publishing is at least once, so the readers here drop a seq they
have already delivered (per database id). Stream offsets are not seqs: a
reader that starts after seq ``since`` finds the offset by a short binary
search over offsets, then skips ``seq <= since``.

The publisher also writes the whole state into the stream now and then (a
*snapshot*: ``snapshot-begin``, parts that are JSON arrays of entities,
``snapshot-end`` with the seq the state is at). Every message carries the
header ``generation`` (the last snapshot begun before it), which never
decreases along the stream, so a consumer that starts from nothing
binary-searches the newest snapshot, takes it as its state and applies the
changes after its seq: the complete state from the stream alone, also after
retention dropped the first changes.

* ``StreamReader``: the changes after a seq (snapshots skipped unless asked).
* ``Replica``: the state of one sidecar, kept from its stream in a thread;
  answers ``get_all`` and ``changes`` as the sidecar's socket does (the
  Vitrage datasources use it with ``[synchronizer] stream_url``).
* ``Regions``: several sidecars (regions) read by one consumer; an entity is
  identified by (region, key), each region resumes at its own seq, and the
  state with the positions is saved to one file.

Needs Debian's python3-kombu (and its py-amqp transport) only.

    from vitrage_synchronizer.stream import StreamReader
    for m in StreamReader('amqp://guest:guest@broker:5672/', 'synchronizer.changes', since=42):
        if m.resync:  # a marker, or a Gap (m.kind == 'gap') first
            ...  # changes m.lost_from..m.lost_through are gone: get_all
        else:
            handle(m.change)
"""
import bisect
import json
import logging
import os
import socket
import threading
import time

import kombu

LOG = logging.getLogger(__name__)

#: The code of a ``changes`` answer that asks for a full snapshot, as the
#: sidecar's socket answers it (client.RESYNC_NEEDED).
RESYNC_NEEDED = -32001

SNAPSHOT_KINDS = ('snapshot-begin', 'snapshot', 'snapshot-end')


class StreamError(Exception):
    """The stream could not be read."""


class NotReady(StreamError):
    """The replica holds no complete state yet."""


class ResyncNeeded(StreamError):
    """``since`` is not in what the replica holds: take a full snapshot."""
    code = RESYNC_NEEDED

    def __init__(self, message):
        super(ResyncNeeded, self).__init__(message)
        self.message = message


class Message(object):
    """One delivered stream message: a change, a resync marker or a part
    of a snapshot (``kind``)."""

    __slots__ = ('offset', 'seq', 'database_id', 'type', 'resync',
                 'lost_from', 'lost_through', 'body', 'kind', 'generation',
                 'snapshot_seq', 'part', 'parts', 'count')

    def __init__(self, raw):
        props = getattr(raw, 'properties', {}) or {}
        h = props.get('application_headers') or {}
        try:
            self.offset = int(h['x-stream-offset'])
            self.seq = int(h['seq'])
        except (KeyError, TypeError, ValueError):
            raise StreamError('stream message without x-stream-offset/seq headers')
        self.kind = props.get('type') or 'change'
        self.database_id = h.get('database_id', '')
        self.type = h.get('type', '')
        self.resync = bool(h.get('resync', False))
        self.lost_from = int(h.get('lost_from', 0))
        self.lost_through = int(h.get('lost_through', 0))
        self.generation = int(h.get('generation', -1))
        self.snapshot_seq = int(h.get('snapshot_seq', 0))
        self.part = int(h.get('part', 0))
        self.parts = int(h.get('parts', 0))
        self.count = int(h.get('entities', 0)) if self.is_snapshot else 0
        body = raw.body
        self.body = body if isinstance(body, bytes) else body.encode('utf-8')

    @property
    def is_snapshot(self):
        return self.kind in SNAPSHOT_KINDS

    @property
    def change(self):
        """The change object (a dict), as the socket's notifications carry it."""
        return json.loads(self.body.decode('utf-8'))

    @property
    def entities(self):
        """A snapshot part's entities (a list of dicts)."""
        return json.loads(self.body.decode('utf-8'))


class Gap(object):
    """What a reader gets first when the stream no longer holds the changes
    after its ``since``: like a resync marker, resynchronize."""

    kind = 'gap'
    resync = True
    is_snapshot = False
    offset = None
    body = b''

    def __init__(self, lost_from, lost_through, database_id):
        self.lost_from = lost_from
        self.lost_through = lost_through
        self.seq = lost_through
        self.database_id = database_id


class _Stream(object):
    """One connection to one stream: probes and a consumer."""

    def __init__(self, url, stream):
        self.stream = stream
        try:
            self.conn = kombu.Connection(url)
            self.conn.connect()
        except Exception as e:
            raise StreamError('stream %s: connect: %s' % (stream, e))
        self.ch = None
        self.queue = []
        self.n = 0
        self.prefetch = 1000

    def close(self):
        try:
            self.conn.release()
        except Exception:  # already broken
            pass

    def _consume(self, offset, prefetch, callback):
        ch = self.conn.channel()
        ch.basic_qos(0, prefetch, False)
        tag = ch.basic_consume(queue=self.stream, no_ack=False,
                               callback=callback,
                               arguments={'x-stream-offset': offset})
        return ch, tag

    def probe(self, offset):
        """The first message at or after ``offset``; None when none comes."""
        got = []
        ch, tag = self._consume(offset, 1, got.append)
        try:
            try:
                self.conn.drain_events(timeout=2)
            except socket.timeout:  # nothing at or after offset
                return None
            return Message(got[0]) if got else None
        finally:
            # Cancelled first, so that no delivery races the close (py-amqp
            # warns about each one).
            ch.basic_cancel(tag)
            ch.close()

    def since_offset(self, since):
        """(offset, gap): where the changes after ``since`` start, and,
        when the stream no longer holds the changes after since (retention
        dropped them, or the stream was made again), a Gap for them."""
        # Seqs grow along the stream but for the resent tails after a
        # publisher reconnects, which only repeat seqs: a probe whose seq
        # is <= since still has every later seq after it.
        if since < 0:
            return 'first', None
        first = self.probe('first')
        if first is None:
            return 'first', None
        if first.seq > since:
            # A change: the changes since+1..seq-1 are not in the stream.
            # A snapshot message's seq is the last change published before
            # it: that change is not in the stream either. A resync marker
            # says so itself.
            through = first.seq if first.is_snapshot else first.seq - 1
            if through > since and not first.resync:
                return 'first', Gap(since + 1, through, first.database_id)
            return 'first', None
        last = self.probe('last')
        if last is None:
            return 'first', None
        if last.seq <= since:
            return last.offset, None
        lo, hi = first.offset, last.offset
        while hi - lo > 1:
            mid = lo + (hi - lo) // 2
            m = self.probe(mid)
            if m is not None and m.seq <= since and m.offset < hi:
                lo = m.offset
            else:
                hi = mid
        return lo, None

    def snapshot_offset(self):
        """(offset, whole): where to start reading for a complete state.
        Normally the newest snapshot's begin (whole False). A stream whose
        last chunk begins before any snapshot gives that chunk's start (a
        begin may be inside it: the reader waits for the next begin), or,
        when the stream holds the change log from seq 1, its first message
        (whole True: the changes alone make the state). None: the stream
        is empty."""
        # "last" is the first message of the last chunk, whose generation
        # may be older than a begin later in that chunk.
        last = self.probe('last')
        first = self.probe('first')
        if last is None or first is None:
            return None, False
        if last.generation < 1:
            if not first.is_snapshot and not first.resync and first.seq == 1:
                return 'first', True
            return last.offset, False
        gen = last.generation
        if first.generation >= gen:
            return first.offset, False
        # The first offset whose message has a generation >= gen: that
        # snapshot's begin (generations never decrease along the stream).
        # lo's message is older, hi's is of gen or newer.
        lo, hi = first.offset, last.offset
        while hi - lo > 1:
            mid = lo + (hi - lo) // 2
            m = self.probe(mid)
            if m is not None and m.generation >= gen:
                hi = mid
            else:
                lo = mid
        return hi, False

    def start(self, offset, prefetch=1000):
        self.prefetch = prefetch
        self.ch, _ = self._consume(offset, prefetch, self.queue.append)

    def next(self, timeout):
        """The next message, or None after ``timeout`` seconds without one
        (None: wait for ever)."""
        while not self.queue:
            try:
                self.conn.drain_events(timeout=timeout)
            except socket.timeout:
                return None
        raw = self.queue.pop(0)
        self.n += 1
        if self.n % (self.prefetch // 2 + 1) == 0:
            # Streams keep messages whatever is acknowledged: acks only
            # return credit.
            self.ch.basic_ack(raw.delivery_tag, multiple=True)
        return Message(raw)


class StreamReader(object):
    """Iterates over the changes of a stream after ``since`` (``since < 0``:
    from the first message), deduplicated by seq, following the stream.
    Snapshot messages are skipped unless ``snapshots`` is true; they never
    count in the deduplication."""

    def __init__(self, url, stream, since=-1, prefetch=1000, idle_timeout=None,
                 snapshots=False):
        self.url = url
        self.stream = stream
        self.since = since
        self.prefetch = prefetch
        #: stop iterating after this many seconds without a message (None:
        #: follow forever)
        self.idle_timeout = idle_timeout
        self.snapshots = snapshots
        #: set once reading started: the Gap yielded first, when the
        #: stream no longer holds the changes after since.
        self.gap = None
        self._s = None

    def close(self):
        if self._s is not None:
            self._s.close()
            self._s = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        self._s = _Stream(self.url, self.stream)
        try:
            offset, self.gap = self._s.since_offset(self.since)
            self._s.start(offset, self.prefetch)
            last, dbid = self.since, None
            if self.gap is not None:
                yield self.gap
            while True:
                m = self._s.next(self.idle_timeout)
                if m is None:
                    return
                if m.is_snapshot:
                    if self.snapshots:
                        yield m
                    continue
                if dbid is not None and m.database_id != dbid:
                    last = -1  # seqs start over in another database
                dbid = m.database_id
                if m.seq <= last:
                    continue
                last = m.seq
                yield m
        finally:
            self.close()


class _Collect(object):
    """A snapshot being read: its parts in order, until its end."""

    def __init__(self, m):
        self.generation = m.generation
        self.database_id = m.database_id
        self.parts = 0
        self.entities = {}

    def add(self, m):
        """Take a part or the end; returns True when complete, raises
        StreamError when the snapshot cannot be complete."""
        if m.generation != self.generation:
            raise StreamError('snapshot %d: message of generation %d'
                              % (self.generation, m.generation))
        if m.kind == 'snapshot':
            if m.part != self.parts + 1:
                raise StreamError('snapshot %d: part %d after %d'
                                  % (self.generation, m.part, self.parts))
            self.parts += 1
            for e in m.entities:
                self.entities[e['key']] = e
            return False
        if m.parts != self.parts or m.count != len(self.entities):
            raise StreamError('snapshot %d: end says %d parts, %d entities; '
                              'read %d, %d' % (self.generation, m.parts,
                                               m.count, self.parts,
                                               len(self.entities)))
        return True


class Replica(object):
    """The state of one sidecar, kept from its stream by a thread.

    With no state, it starts at the newest snapshot in the stream (also
    after retention dropped the first changes), takes it and applies the
    changes after it. Given a state (``seq``, ``database_id``,
    ``entities``), it resumes after ``seq``; when the stream no longer
    holds the changes after it, or gives a resync marker or another
    database id, it takes the next snapshot again (``resets`` counts it).

    It answers ``get_all`` and ``changes`` as the sidecar's socket does,
    from the changes read since its last snapshot (at most ``buffer``):
    a ``since`` before them raises ResyncNeeded (code -32001), as the
    socket does for a seq it no longer holds.

    ``on_event(replica, kind, obj)`` is called in the reading thread after
    each change is applied (``kind`` 'change', ``obj`` the change) and
    after a snapshot is taken ('snapshot', ``obj`` its end message).
    """

    def __init__(self, url, stream, region=None, buffer=200000,
                 seq=None, database_id=None, entities=None, on_event=None,
                 prefetch=1000):
        self.url = url
        self.stream = stream
        self.region = region or stream
        self.buffer = buffer
        self.on_event = on_event
        self.prefetch = prefetch
        self._lock = threading.Condition()
        self._entities = dict(entities or {})
        self._seq = seq
        self._db = database_id
        self._ready = seq is not None
        self._floor = seq if seq is not None else 0
        self._log = []   # (seq, change) since the floor
        self._seqs = []
        self._stop = threading.Event()
        self._thread = None
        self.resets = 0
        self.snapshots = 0
        self.last_error = None
        self.snapshot_generation = None

    # -- running -----------------------------------------------------------

    def start(self):
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name='stream-%s' % self.region, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout=10):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_ready(self, timeout):
        with self._lock:
            return self._lock.wait_for(lambda: self._ready, timeout)

    def _run(self):
        backoff = 0.1
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self._session()
            except Exception as e:  # a lost broker: try again
                self.last_error = str(e)
                LOG.warning('stream %s: %s; reconnecting in %.1fs',
                            self.stream, e, backoff)
            if self._stop.is_set():
                return
            if time.monotonic() - t0 > 10:
                backoff = 0.1
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5)

    def _session(self):
        s = _Stream(self.url, self.stream)
        try:
            with self._lock:
                since = self._seq if self._ready else None
            offset = None
            if since is not None:
                offset, gap = s.since_offset(since)
                if gap:
                    LOG.warning('stream %s: the changes after seq %s are no '
                                'longer in the stream: taking the newest '
                                'snapshot', self.stream, since)
                    self._unready()
                    offset = None
            if offset is None:
                offset, whole = s.snapshot_offset()
                if offset is None:
                    raise StreamError('the stream is empty (its publisher '
                                      'has not started)')
                if whole:
                    # No snapshot, but every change from seq 1.
                    first = s.probe('first')
                    self._install({}, 0, first.database_id, None)
            s.start(offset, self.prefetch)
            collect = None
            while not self._stop.is_set():
                m = s.next(0.5)
                if m is None:
                    continue
                with self._lock:
                    ready, db = self._ready, self._db
                if m.is_snapshot:
                    if ready:
                        continue
                    if m.kind == 'snapshot-begin':
                        collect = _Collect(m)
                    elif collect is not None:
                        try:
                            if collect.add(m):
                                self._install(collect.entities,
                                              m.snapshot_seq,
                                              collect.database_id, m)
                                collect = None
                        except StreamError as e:
                            LOG.warning('stream %s: %s; waiting for the '
                                        'next snapshot', self.stream, e)
                            collect = None
                    continue
                if not ready:
                    continue
                if m.database_id != db:
                    LOG.warning('stream %s: database changed from %s to %s: '
                                'taking the next snapshot', self.stream, db,
                                m.database_id)
                    self._unready()
                    continue
                if m.resync:
                    LOG.warning('stream %s: changes %d..%d were lost before '
                                'they were published: taking the next '
                                'snapshot', self.stream, m.lost_from,
                                m.lost_through)
                    self._unready()
                    continue
                self._apply(m)
        finally:
            s.close()

    def _unready(self):
        with self._lock:
            self._ready = False
            self.resets += 1
            self._lock.notify_all()

    def _install(self, entities, seq, db, end):
        with self._lock:
            self._entities = entities
            self._seq = seq
            self._db = db
            self._floor = seq
            self._log, self._seqs = [], []
            self._ready = True
            if end is not None:
                self.snapshots += 1
                self.snapshot_generation = end.generation
            self._lock.notify_all()
        LOG.info('stream %s: state of database %s at seq %s (%d entities)',
                 self.stream, db, seq, len(entities))
        if self.on_event is not None and end is not None:
            self.on_event(self, 'snapshot', end)

    def _apply(self, m):
        with self._lock:
            if m.seq <= self._seq:
                return  # published again after a reconnect
            ch = m.change
            if ch.get('action') == 'delete':
                self._entities.pop(ch['key'], None)
            else:
                e = dict(ch)
                e.pop('action', None)
                e.pop('seq', None)
                self._entities[ch['key']] = e
            self._seq = m.seq
            self._log.append(ch)
            self._seqs.append(m.seq)
            # Trimmed in steps, not one change at a time (a list's head
            # costs its length to cut).
            if len(self._seqs) > self.buffer + min(self.buffer, 10000):
                cut = len(self._seqs) - self.buffer
                self._floor = self._seqs[cut - 1]
                del self._log[:cut]
                del self._seqs[:cut]
            self._lock.notify_all()
        if self.on_event is not None:
            self.on_event(self, 'change', ch)

    # -- the sidecar's answers ----------------------------------------------

    def _need_ready(self, timeout):
        if not self._lock.wait_for(lambda: self._ready, timeout):
            raise NotReady('stream %s: no complete state yet%s' % (
                self.stream, ': ' + self.last_error if self.last_error else ''))

    def get_all(self, types=None, timeout=0):
        """``{"seq", "entities", "database_id"}`` as the socket's get_all."""
        with self._lock:
            self._need_ready(timeout)
            types = set(types or ())
            return {'seq': self._seq, 'database_id': self._db,
                    'entities': [dict(e) for e in self._entities.values()
                                 if not types or e.get('type') in types]}

    def changes(self, since, types=None, limit=0, database_id=None,
                timeout=0):
        """``{"changes", "seq", "more", "database_id"}`` as the socket's
        changes; ResyncNeeded when ``since`` is not in what it holds."""
        with self._lock:
            self._need_ready(timeout)
            if database_id and database_id != self._db:
                raise ResyncNeeded('database_id %s is not the stream\'s (%s)'
                                   % (database_id, self._db))
            if since < self._floor or since > self._seq:
                raise ResyncNeeded('seq %s is not in the changes held '
                                   '(%s..%s)' % (since, self._floor, self._seq))
            types = set(types or ())
            out, seq, more = [], self._seq, False
            for i in range(bisect.bisect_right(self._seqs, since),
                           len(self._seqs)):
                ch = self._log[i]
                if types and ch.get('type') not in types:
                    continue
                if limit and len(out) == limit:
                    seq, more = out[-1]['seq'], True
                    break
                out.append(ch)
            return {'changes': out, 'seq': seq, 'more': more,
                    'database_id': self._db}

    def wait_change(self, since, types=None, database_id=None, wait=5.0):
        """Wait up to ``wait`` seconds for a change of ``types`` after
        ``since``, as the socket client's wait_change: True as soon as one
        is there, or when ``changes`` would not answer with changes (no
        state, another database, a seq it does not hold), False when none
        came."""
        types = set(types or ())
        scanned = [since]  # the changes up to this seq are not of types

        def there():
            if (not self._ready or (database_id and database_id != self._db)
                    or since < self._floor or since > self._seq):
                return True
            for i in range(bisect.bisect_right(self._seqs, scanned[0]),
                           len(self._seqs)):
                if not types or self._log[i].get('type') in types:
                    return True
                scanned[0] = self._seqs[i]
            return False

        with self._lock:
            return self._lock.wait_for(there, wait)

    def state(self):
        """(database_id, seq, entities): a consistent copy."""
        with self._lock:
            return self._db, self._seq, dict(self._entities)

    @property
    def ready(self):
        with self._lock:
            return self._ready


class Regions(object):
    """Several sidecars' streams read by one consumer, merged.

    ``streams`` maps a region name to ``(url, stream)``. An entity's
    identity is (region, key): the same key in two regions is two
    entities. Each region resumes at its own seq: ``save()`` writes every
    region's (database id, seq, entities) to ``path`` in one file, and a
    Regions made on that file goes on after those seqs (a region whose
    stream no longer holds them starts again at its newest snapshot).
    Seqs of two regions are unrelated and never compared.

    ``on_event(region, kind, obj)``: see Replica.
    """

    def __init__(self, streams, path=None, on_event=None, buffer=200000):
        self.path = path
        saved = {}
        if path and os.path.exists(path):
            with open(path) as f:
                saved = json.load(f).get('regions', {})
        self.replicas = {}
        for region, (url, stream) in sorted(streams.items()):
            st = saved.get(region) or {}
            if st.get('stream') not in (None, stream):
                st = {}  # another stream: start from its snapshot
            cb = None
            if on_event is not None:
                cb = (lambda r, k, o, region=region: on_event(region, k, o))
            self.replicas[region] = Replica(
                url, stream, region=region, buffer=buffer,
                seq=st.get('seq'), database_id=st.get('database_id'),
                entities=st.get('entities'), on_event=cb)

    def start(self):
        for r in self.replicas.values():
            r.start()
        return self

    def stop(self):
        for r in self.replicas.values():
            r.stop()

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        return all(r.wait_ready(max(0, deadline - time.monotonic()))
                   for r in self.replicas.values())

    def entities(self):
        """{(region, key): entity} over every region."""
        out = {}
        for region, r in self.replicas.items():
            _, _, es = r.state()
            for k, e in es.items():
                out[(region, k)] = e
        return out

    def positions(self):
        """{region: (database_id, seq)}."""
        out = {}
        for region, r in self.replicas.items():
            db, seq, _ = r.state()
            out[region] = (db, seq)
        return out

    def save(self, path=None):
        """Write every region's state and position, atomically. Each
        region's entities and seq are one consistent pair."""
        path = path or self.path
        regions = {}
        for region, r in self.replicas.items():
            db, seq, es = r.state()
            if seq is None:
                continue
            regions[region] = {'stream': r.stream, 'database_id': db,
                               'seq': seq, 'entities': es}
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump({'regions': regions}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


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
            why = ('are no longer in the stream' if m.kind == 'gap' else
                   'were pruned before they were published')
            sys.stderr.write('stream: changes %d..%d of database %s %s; resynchronize\n'
                             % (m.lost_from, m.lost_through, m.database_id, why))
            continue
        sys.stdout.write(m.body.decode('utf-8') + '\n')
        sys.stdout.flush()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
