#!/usr/bin/env python3
"""An example exec plugin for the synchronizer (stdlib only).

The synchronizer runs it every interval and reads one JSON object from its
standard output:

    {"entities": [{"type": ..., "id": ..., "name": ..., "state": ...,
                   "parent_key": ..., "project": ..., "data": {...},
                   "links": [{"key": ..., "relation": ...}]}],
     "types": [...]}

"types" (optional) lists the entity types this run listed completely; the
synchronizer deletes only missing entities of those types. Without it, the
plugin is taken to report everything it owns. Exit non-zero (and say why on
stderr) when the source could not be read: the synchronizer then changes
nothing. This one reports the machine it runs on as a host with its load.
"""
import json
import os
import socket
import sys


def main():
    try:
        with open("/proc/loadavg") as f:
            load1 = float(f.read().split()[0])
    except OSError as e:
        print(f"cannot read load average: {e}", file=sys.stderr)
        return 1
    host = socket.gethostname()
    cpus = os.cpu_count() or 1
    state = "OVERLOADED" if load1 > 2 * cpus else "OK"
    entity = {
        "type": "plugin.machine",
        "id": host,
        "name": host,
        "state": state,
        "data": {"cpus": cpus},
    }
    json.dump({"entities": [entity], "types": ["plugin.machine"]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
