"""The driver every synchronizer-fed datasource shares.

get_all lists the sidecar's current entities of the datasource's type (the
periodic one, with ``[synchronizer] periodic_snapshot = changes``, only what
changed); get_changes reads the sidecar's change log after the last seq it
applied (kept in a small state file across Vitrage restarts). Both hand
Vitrage's own transformer the rows it reads from Vitrage's own driver.

Three choices follow from how Vitrage 9.0 reads rows (see python/README.md):

* Every row is marked ``vitrage_datasource_action: snapshot`` (init_snapshot
  in the first get_all), also in get_changes: the nova.instance transformer
  reads any ``update`` row as a Nova notification, and the rows we send are
  API-shaped. Deletes carry ``vitrage_event_type: delete_entity``.
* All rows of one call get one sample date, strictly later than the previous
  call's (the call waits for the next second when needed), so that Vitrage's
  string comparison of 1-second dates never orders two of our batches
  wrongly and get_all's outdated-entity sweep never mistakes a fresh entity
  for an old one.
* A sidecar that cannot be reached makes get_all raise (DriverExec logs it
  and keeps the graph: no outdated-entity sweep runs) and get_changes log
  and return nothing, to try again at the next interval.
"""
import json
import os
import threading
import time

from oslo_config import cfg
from oslo_log import log

from vitrage.datasources.driver_base import DriverBase
from vitrage.utils import datetime as datetime_utils

from vitrage_synchronizer import client as sclient
from vitrage_synchronizer.datasources import constants as C
from vitrage_synchronizer.datasources import rows as R

CONF = cfg.CONF
LOG = log.getLogger(__name__)


class NotReady(sclient.SidecarError):
    """The sidecar has collected nothing yet: its empty answer means
    "don't know", not "everything is gone"."""


class _SweepAnswer(object):
    """should_delete_outdated_entities, answered per call on a driver and
    from the config on the class (Vitrage asks both ways)."""

    def __get__(self, driver, cls):
        if driver is None:
            return lambda: CONF.synchronizer.periodic_snapshot == 'full'
        return lambda: driver._sweep


class SynchronizerDriver(DriverBase):
    """Base of the datasource drivers; subclasses set DATASOURCE."""

    #: The Vitrage datasource (and sidecar entity type) this driver serves.
    DATASOURCE = None
    #: What Vitrage's own driver of this datasource filters out.
    FILTER_OUT = ('manager', '_info')

    def __init__(self):
        super(SynchronizerDriver, self).__init__()
        self._build = R.BUILDERS[self.DATASOURCE]
        self._lock = threading.Lock()
        self._known = {}        # key -> entity without data, as last sent
        self._seq = None        # last change seq applied
        self._db_id = None      # the sidecar database that seq belongs to
        self._seq_loaded = False
        self._last_date = ''    # sample date of the previous batch
        self._sweep = True      # the last get_all was a full one
        self._need_full = False   # no full snapshot got through yet
        self._need_sweep = False  # the next get_all must be a full one

    # -- hooks ------------------------------------------------------------

    def sidecar_types(self):
        """The sidecar entity types to ask for."""
        return [self.DATASOURCE]

    def accepts(self, entity):
        """Whether this datasource shows ``entity`` at all."""
        return True

    # Whether Vitrage may delete the vertices a get_all did not refresh.
    # DriverExec asks the driver after each get_all (true only after a full
    # one); the ConsistencyEnforcer asks the class (true only when every
    # periodic get_all is full: with "changes" unchanged vertices are not
    # refreshed, and must not be taken for outdated).
    should_delete_outdated_entities = _SweepAnswer()

    @classmethod
    def properties_to_filter_out(cls):
        return list(cls.FILTER_OUT)

    # -- Vitrage's driver API -----------------------------------------------

    def get_all(self, datasource_action):
        with self._lock:
            rows = None
            if not (datasource_action != C.SNAPSHOT or self._need_full or
                    self._need_sweep or self._load_seq() is None or
                    CONF.synchronizer.periodic_snapshot == 'full'):
                try:
                    rows = self._read_changes(self._seq)
                    self._sweep = False
                except sclient.RPCError as e:
                    if e.code != sclient.RESYNC_NEEDED:
                        raise
                    LOG.warning('synchronizer %s: seq %s is no longer in the '
                                'change log (%s): sending a full snapshot',
                                self.name, self._seq, e.message)
            if rows is None:
                # Until a full snapshot gets through (the sidecar may be
                # down at Vitrage's start), get_changes sends full ones.
                self._need_full = True
                rows = self._snapshot(datasource_action)
                self._sweep = True
                self._need_full = self._need_sweep = False
            LOG.info('synchronizer %s: get_all (%s) gives %d rows (seq %s)',
                     self.name, 'full' if self._sweep else 'changes',
                     len(rows), self._seq)
            return rows

    def get_changes(self, datasource_action):
        self._wait_change()
        with self._lock:
            try:
                if self._need_full or self._load_seq() is None:
                    LOG.info('synchronizer %s: no full snapshot yet, sending '
                             'one', self.name)
                    return self._full_from_changes()
                return self._read_changes(self._seq)
            except sclient.RPCError as e:
                if e.code != sclient.RESYNC_NEEDED:
                    LOG.warning('synchronizer %s: get_changes: %s',
                                self.name, e)
                    return []
                LOG.warning('synchronizer %s: seq %s is no longer in the '
                            'change log (%s): sending a full snapshot',
                            self.name, self._seq, e.message)
                try:
                    return self._full_from_changes()
                except sclient.SidecarError as e:
                    LOG.warning('synchronizer %s: get_changes: %s',
                                self.name, e)
                    return []
            except sclient.SidecarError as e:
                LOG.warning('synchronizer %s: get_changes: %s; keeping the '
                            'graph, trying again next interval',
                            self.name, e)
                return []

    def _wait_change(self):
        """Wait up to [synchronizer] changes_wait for a change after the
        last seq applied, so that get_changes answers as soon as the
        sidecar has one rather than a changes_interval later. Without a
        seq yet, or when the wait fails (the sidecar down, a resync
        needed), get_changes goes on at once and deals with it as before.
        """
        wait = CONF.synchronizer.changes_wait
        with self._lock:
            if wait <= 0 or self._need_full or self._load_seq() is None:
                return
            since, db_id = self._seq, self._db_id
        try:
            self._client().wait_change(since, self.sidecar_types(), db_id,
                                       wait)
        except sclient.SidecarError as e:
            LOG.debug('synchronizer %s: waiting for a change: %s',
                      self.name, e)

    def _full_from_changes(self):
        """A full snapshot from get_changes. It can delete only what this
        process sent before, so the next get_all is a full one too, which
        Vitrage follows with its sweep of the vertices it did not refresh.
        """
        self._need_sweep = True
        rows = self._snapshot(C.SNAPSHOT)
        self._need_full = False
        return rows

    # -- internals ----------------------------------------------------------

    @property
    def name(self):
        return self._datasource_name or self.DATASOURCE

    def _client(self):
        if CONF.synchronizer.stream_url:
            return _stream_client()
        return sclient.Client(CONF.synchronizer.socket,
                              CONF.synchronizer.timeout)

    def _snapshot(self, action):
        """All rows, plus deletes of what we sent before and is gone."""
        res = self._client().get_all(self.sidecar_types())
        if not res.get('seq'):
            raise NotReady('synchronizer %s: the sidecar has recorded no '
                           'change yet (not polled yet or a new database)'
                           % self.name)
        rows, known = [], {}
        for e in res.get('entities') or []:
            row = self._build(e) if self.accepts(e) else None
            if row is not None:
                rows.append(row)
                known[e['key']] = _stub(e)
        for key, stub in self._known.items():
            if key not in known:
                row = R.delete_row(self._build, stub)
                if row is not None:
                    rows.append(row)
        self._known = known
        self._save_seq(res['seq'], res.get('database_id'))
        return self._finish(rows, action)

    def _read_changes(self, since):
        """Rows of the changes after ``since``; the last change of each key
        only. Raises RPCError (resync) and SidecarError when nothing was
        read."""
        cli = self._client()
        limit = CONF.synchronizer.changes_limit
        latest = {}  # key -> last change, in the order of that change
        seq, db_id = since, self._db_id
        try:
            while True:
                res = cli.changes(seq, self.sidecar_types(), limit, db_id)
                for ch in res.get('changes') or []:
                    latest.pop(ch['key'], None)
                    latest[ch['key']] = ch
                seq = res['seq']
                db_id = res.get('database_id') or db_id
                if not res.get('more'):
                    break
        except sclient.SidecarError:
            if not latest:
                raise
            # Apply the pages read; the next call goes on from there.
            LOG.warning('synchronizer %s: changes cut short after seq %s',
                        self.name, seq, exc_info=True)
        rows = [r for r in (self._row_of(ch) for ch in latest.values())
                if r is not None]
        self._save_seq(seq, db_id)
        if rows:
            LOG.info('synchronizer %s: %d changes after seq %s give %d rows '
                     '(seq %s)', self.name, len(latest), since, len(rows),
                     seq)
        return self._finish(rows, C.SNAPSHOT)

    def _row_of(self, change):
        key = change['key']
        deleted = change.get('action') == 'delete'
        accepted = self.accepts(change)
        if not deleted and accepted:
            row = self._build(change)
            if row is not None:
                self._known[key] = _stub(change)
                return row
        # A delete, or an entity this datasource does not show (any more).
        stub = self._known.pop(key, None)
        if stub is None and not (deleted and accepted):
            return None  # never shown here: nothing to delete
        row = R.delete_row(self._build, change)
        if row is None and stub is not None:
            row = R.delete_row(self._build, stub)
        return row

    def _finish(self, rows, action):
        if not rows:
            return []
        rows = self.make_pickleable(rows, self.DATASOURCE, action,
                                    *self.properties_to_filter_out())
        date = self._next_date()
        for r in rows:
            r[C.SAMPLE_DATE] = date
        return rows

    def _next_date(self):
        """A sample date strictly after the previous batch's."""
        date = datetime_utils.format_utcnow()
        while date <= self._last_date:
            time.sleep(1.001 - time.time() % 1)
            date = datetime_utils.format_utcnow()
        self._last_date = date
        return date

    def _state_path(self):
        return os.path.join(CONF.synchronizer.state_dir,
                            '%s.json' % self.name)

    def _load_seq(self):
        if self._seq is None and not self._seq_loaded:
            self._seq_loaded = True
            try:
                with open(self._state_path()) as f:
                    state = json.load(f)
                self._seq = int(state['seq'])
                # Absent in files written before the sidecar had ids.
                self._db_id = state.get('database_id')
                LOG.info('synchronizer %s: going on after seq %s',
                         self.name, self._seq)
            except FileNotFoundError:
                pass
            except (OSError, ValueError, KeyError, TypeError) as e:
                LOG.warning('synchronizer %s: unreadable state file %s: %s',
                            self.name, self._state_path(), e)
        return self._seq

    def _save_seq(self, seq, db_id=None):
        """Keep ``seq`` with the id of the database it belongs to: the
        next changes call sends both, so a replaced sidecar database, or
        changes it lost, mean a resync and never a silent skip."""
        self._seq_loaded = True
        if seq == self._seq and db_id == self._db_id:
            return
        self._seq, self._db_id = seq, db_id
        path = self._state_path()
        tmp = path + '.tmp'
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            state = {'seq': seq}
            if db_id:
                state['database_id'] = db_id
            with open(tmp, 'w') as f:
                json.dump(state, f)
            os.replace(tmp, path)
        except OSError as e:
            # Not fatal: a restart then starts with a full snapshot.
            LOG.warning('synchronizer %s: cannot save seq to %s: %s',
                        self.name, path, e)


_replica = None
_replica_lock = threading.Lock()


def _stream_client():
    """The process's one reader of the stream, shared by every datasource
    (drivers are singletons run by vitrage-graph's scheduler threads)."""
    global _replica
    with _replica_lock:
        if _replica is None:
            from vitrage_synchronizer import stream
            _replica = stream.Replica(
                CONF.synchronizer.stream_url, CONF.synchronizer.stream,
                buffer=CONF.synchronizer.stream_buffer).start()
            LOG.info('synchronizer: reading stream %s',
                     CONF.synchronizer.stream)
        return _StreamClient(_replica, CONF.synchronizer.timeout)


class _StreamClient(object):
    """The socket client's get_all and changes, answered from the stream's
    replica, with the socket's errors."""

    def __init__(self, replica, timeout):
        self.replica = replica
        self.timeout = timeout

    def _call(self, fn, *args):
        from vitrage_synchronizer import stream
        try:
            return fn(*args)
        except stream.ResyncNeeded as e:
            raise sclient.RPCError(sclient.RESYNC_NEEDED, e.message)
        except stream.StreamError as e:
            raise sclient.SidecarError('synchronizer: %s' % e)

    def get_all(self, types=None):
        return self._call(self.replica.get_all, types, self.timeout)

    def changes(self, since, types=None, limit=0, database_id=None):
        # No wait: get_changes runs every changes_interval anyway.
        return self._call(self.replica.changes, since, types, limit,
                          database_id, 0)

    def wait_change(self, since, types=None, database_id=None, wait=5.0):
        return self._call(self.replica.wait_change, since, types,
                          database_id, wait)


def _stub(entity):
    """What a later delete row needs: the entity without its data."""
    return {k: v for k, v in entity.items() if k != 'data'}
