#!/usr/bin/python3
"""Prints N copies of a real Nova instance (nova_instance.json: the first
server of Nova's servers-details-resp.json sample, through the openstack
collector's mapping), each with its own id, for the sizing figures. Every
run flips state and task fields and bumps "updated", as a reboot would, so
each poll updates every instance. Streams, so that 100k instances do not
sit in this process's memory."""
import json, os, sys, time

n = int(sys.argv[1])
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "nova_instance.json")) as f:
    tmpl = json.load(f)
now = time.time_ns()
state = ["ACTIVE", "SHUTOFF"][(now // 1000) % 2]
updated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + str(now % 1000000)
out = sys.stdout
out.write('{"types": ["nova.instance"], "entities": [')
for i in range(n):
    uid = "%08x-6804-445a-a6d8-%012x" % (i, i)
    e = dict(tmpl)
    e["id"] = uid
    e["name"] = "vm-%d" % i
    e["state"] = state
    d = dict(e["data"])
    d["id"] = uid
    d["name"] = e["name"]
    d["status"] = state
    d["OS-EXT-STS:vm_state"] = state.lower()
    d["updated"] = updated
    e["data"] = d
    if i:
        out.write(",")
    out.write(json.dumps(e, separators=(",", ":")))
out.write("]}")
