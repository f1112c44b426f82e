#!/usr/bin/env python3
"""Test plugin for the exec collector: prints N instances.

usage: gen.py N [STATE_FILE]

Every instance gets the state read from STATE_FILE (default ACTIVE), so a
test changes every entity at once by rewriting that file. The data is shaped
like a Nova server so that rows have a realistic size (about 1 KB).
"""
import json
import sys

n = int(sys.argv[1])
state = "ACTIVE"
if len(sys.argv) > 2:
    with open(sys.argv[2]) as f:
        state = f.read().strip() or state
ents = []
for i in range(n):
    sid = "%08x-0000-4000-8000-%012x" % (i, i)
    ents.append({
        "type": "nova.instance", "id": sid, "name": "vm-%d" % i, "state": state,
        "project": "6f70656e737461636b20342065766572",
        "parent_key": "nova.host:compute-%d" % (i % 50),
        "data": {
            "id": sid, "name": "vm-%d" % i, "status": state,
            "OS-EXT-SRV-ATTR:host": "compute-%d" % (i % 50),
            "OS-EXT-AZ:availability_zone": "nova",
            "addresses": {"private": [{"addr": "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255),
                                        "version": 4, "OS-EXT-IPS:type": "fixed",
                                        "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:%02x:%02x:%02x" % (i >> 16 & 255, i >> 8 & 255, i & 255)}]},
            "flavor": {"original_name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20, "ephemeral": 0, "swap": 0, "extra_specs": {}},
            "image": {"id": "70a599e0-31e7-49b7-b260-868f441e862b"},
            "metadata": {"role": "web"}, "security_groups": [{"name": "default"}],
            "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z",
            "tenant_id": "6f70656e737461636b20342065766572", "user_id": "admin",
            "hostId": "2091634baaccdc4c5a1d57069c833e402921df696b7f970791b12ec6",
        },
    })
sys.stdout.write(json.dumps({"entities": ents, "types": ["nova.instance"]}))
