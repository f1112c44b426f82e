"""The stream replica's bookkeeping (no broker): snapshots taken whole or
not at all, changes applied once, get_all and changes answered as the
sidecar's socket answers them, and the datasources' adapter that turns its
errors into the socket client's."""
import json
import unittest

from vitrage_synchronizer import client as sclient
from vitrage_synchronizer import stream


class Raw(object):
    """A delivery as kombu hands it to the replica."""

    def __init__(self, kind, offset, seq, body, **headers):
        headers.update({'x-stream-offset': offset, 'seq': seq,
                        'database_id': headers.pop('db', 'db-1')})
        self.properties = {'type': kind, 'application_headers': headers}
        self.body = json.dumps(body).encode()


def ent(key, state='ACTIVE'):
    typ = key.split(':')[0]
    return {'key': key, 'type': typ, 'id': key.split(':')[1], 'state': state}


def change(seq, action, key, state='ACTIVE'):
    c = ent(key, state)
    c.update({'seq': seq, 'action': action})
    return stream.Message(Raw('change', seq + 100, seq, c, generation=1,
                              type=c['type']))


class CollectTest(unittest.TestCase):

    def snapshot(self, gen, parts, end_parts=None, end_count=None):
        msgs = [stream.Message(Raw('snapshot-begin', 0, 5, {},
                                   generation=gen))]
        n = 0
        for i, p in enumerate(parts, 1):
            n += len(p)
            msgs.append(stream.Message(Raw('snapshot', i, 5, p, generation=gen,
                                           part=i, entities=len(p))))
        msgs.append(stream.Message(Raw(
            'snapshot-end', 9, 5, {}, generation=gen, snapshot_seq=7,
            parts=len(parts) if end_parts is None else end_parts,
            entities=n if end_count is None else end_count)))
        return msgs

    def test_complete(self):
        msgs = self.snapshot(1, [[ent('a:1'), ent('a:2')], [ent('b:1')]])
        c = stream._Collect(msgs[0])
        self.assertFalse(c.add(msgs[1]))
        self.assertFalse(c.add(msgs[2]))
        self.assertTrue(c.add(msgs[3]))
        self.assertEqual(sorted(c.entities), ['a:1', 'a:2', 'b:1'])

    def test_missing_part(self):
        msgs = self.snapshot(1, [[ent('a:1')], [ent('b:1')]])
        c = stream._Collect(msgs[0])
        c.add(msgs[1])
        with self.assertRaises(stream.StreamError):
            c.add(msgs[3])  # the end, part 2 missing

    def test_other_generation(self):
        a = self.snapshot(1, [[ent('a:1')]])
        b = self.snapshot(2, [[ent('a:1')]])
        c = stream._Collect(a[0])
        with self.assertRaises(stream.StreamError):
            c.add(b[1])


class ReplicaTest(unittest.TestCase):

    def setUp(self):
        self.events = []
        self.r = stream.Replica('amqp://unused/', 's', buffer=4,
                                on_event=lambda r, k, o: self.events.append(
                                    (k, getattr(o, 'seq', None) or o.get('seq'))))
        self.r._install({'n:1': ent('n:1'), 'h:1': ent('h:1')}, 10, 'db-1',
                        None)

    def test_get_all(self):
        res = self.r.get_all(['n'])
        self.assertEqual(res['seq'], 10)
        self.assertEqual(res['database_id'], 'db-1')
        self.assertEqual([e['key'] for e in res['entities']], ['n:1'])

    def test_changes_applied_once(self):
        for m in (change(11, 'update', 'n:1', 'ERROR'),
                  change(11, 'update', 'n:1', 'ERROR'),  # published again
                  change(12, 'create', 'n:2'),
                  change(13, 'delete', 'h:1')):
            self.r._apply(m)
        res = self.r.get_all()
        self.assertEqual(res['seq'], 13)
        self.assertEqual(sorted(e['key'] for e in res['entities']),
                         ['n:1', 'n:2'])
        self.assertNotIn('action', res['entities'][0])
        self.assertEqual(self.events, [('change', 11), ('change', 12),
                                       ('change', 13)])
        ch = self.r.changes(10, ['n'], limit=1)
        self.assertEqual([c['seq'] for c in ch['changes']], [11])
        self.assertTrue(ch['more'])
        self.assertEqual(ch['seq'], 11)
        ch = self.r.changes(11, ['n'])
        self.assertEqual([c['seq'] for c in ch['changes']], [12])
        self.assertEqual((ch['seq'], ch['more']), (13, False))

    def test_wait_change(self):
        import threading
        self.assertFalse(self.r.wait_change(10, ['n'], 'db-1', 0.05))
        self.r._apply(change(11, 'update', 'h:1'))
        self.assertFalse(self.r.wait_change(10, ['n'], 'db-1', 0.05))
        self.assertTrue(self.r.wait_change(10, ['h'], 'db-1', 0.05))
        t = threading.Timer(0.1, self.r._apply, [change(12, 'update', 'n:1')])
        t.start()
        self.assertTrue(self.r.wait_change(10, ['n'], 'db-1', 5))
        t.join()
        # What changes() cannot answer with changes wakes at once.
        self.assertTrue(self.r.wait_change(10, ['n'], 'db-2', 5))
        self.assertTrue(self.r.wait_change(3, ['n'], 'db-1', 5))

    def test_resync(self):
        for s in range(11, 20):
            self.r._apply(change(s, 'update', 'n:1'))
        # buffer=4, trimmed past 8: 16..19 are held, so since 15 is the
        # oldest answer.
        self.assertEqual(len(self.r.changes(15)['changes']), 4)
        for since, db in ((14, None), (20, None), (17, 'db-2')):
            with self.assertRaises(stream.ResyncNeeded):
                self.r.changes(since, database_id=db)

    def test_not_ready(self):
        r = stream.Replica('amqp://unused/', 's')
        with self.assertRaises(stream.NotReady):
            r.get_all(timeout=0.01)


class AdapterTest(unittest.TestCase):
    """The datasources' view of the replica (needs Vitrage)."""

    def test_errors(self):
        from vitrage_synchronizer.datasources import base
        r = stream.Replica('amqp://unused/', 's')
        c = base._StreamClient(r, 0.01)
        with self.assertRaises(sclient.SidecarError) as e:
            c.get_all(['n'])
        self.assertNotIsInstance(e.exception, sclient.RPCError)
        r._install({'n:1': ent('n:1')}, 10, 'db-1', None)
        self.assertEqual(c.get_all(['n'])['seq'], 10)
        with self.assertRaises(sclient.RPCError) as e:
            c.changes(3, ['n'], 0, 'db-1')
        self.assertEqual(e.exception.code, sclient.RESYNC_NEEDED)
        self.assertEqual(c.changes(10, ['n'], 0, 'db-1')['changes'], [])
        self.assertFalse(c.wait_change(10, ['n'], 'db-1', 0.05))


if __name__ == '__main__':
    unittest.main()
