"""A consumer of several regions' streams, for e2e/stream_test.go.

    regions_consumer.py STATE REGION=URL,STREAM ...

Prints one JSON object per line: {"event": "snapshot"|"change", ...} as the
regions' streams deliver them, {"event": "ready", "entities": [[region,
key, state], ...], "positions": {...}} once every region has a state, and
{"event": "saved", "positions": ...} after SIGTERM, when the state and
positions are saved to STATE.
"""
import json
import signal
import sys
import threading

from vitrage_synchronizer.stream import Regions

out_lock = threading.Lock()


def emit(obj):
    with out_lock:
        sys.stdout.write(json.dumps(obj, sort_keys=True) + '\n')
        sys.stdout.flush()


def on_event(region, kind, obj):
    if kind == 'change':
        emit({'event': 'change', 'region': region, 'seq': obj['seq'],
              'key': obj['key'], 'action': obj['action'],
              'state': obj.get('state')})
    else:
        emit({'event': 'snapshot', 'region': region, 'seq': obj.snapshot_seq,
              'generation': obj.generation})


def main():
    path = sys.argv[1]
    streams = {}
    for arg in sys.argv[2:]:
        region, _, rest = arg.partition('=')
        url, _, stream = rest.rpartition(',')
        streams[region] = (url, stream)
    regions = Regions(streams, path, on_event=on_event)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    regions.start()
    if not regions.wait_ready(60):
        emit({'event': 'error', 'error': 'not ready after 60 s'})
        return 1
    emit({'event': 'ready',
          'entities': sorted([r, k, e.get('state')]
                             for (r, k), e in regions.entities().items()),
          'positions': regions.positions()})
    stop.wait()
    regions.stop()
    regions.save()
    emit({'event': 'saved', 'positions': regions.positions(),
          'resets': {r: x.resets for r, x in regions.replicas.items()}})
    return 0


if __name__ == '__main__':
    sys.exit(main())
