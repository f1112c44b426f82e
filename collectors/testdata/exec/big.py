"""Prints N switches of about 1 KB each, streamed (usage: big.py N)."""
import json
import sys

n = int(sys.argv[1])
out = sys.stdout
out.write('{"types": ["switch"], "entities": [')
for i in range(n):
    if i:
        out.write(",")
    out.write(json.dumps({
        "type": "switch", "id": "sw-%d" % i, "name": "switch-%d" % i, "state": "available",
        "data": {"description": "x" * 900, "rack": i % 40},
        "links": [{"key": "nova.host:compute-%d" % (i % 50), "relation": "attached"}],
    }))
out.write("]}")
