#!/usr/bin/python3
"""A synchronizer client in 15 lines of stdlib Python: get_all, then changes."""
import json, socket, sys

sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1] if len(sys.argv) > 1 else "var/synchronizer.sock")
lines = sock.makefile("rb")
def call(i, method, params):
    sock.sendall(json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}).encode() + b"\n")
    while True:
        msg = json.loads(lines.readline())
        if msg.get("id") == i:
            return msg["result"]
snap = call(1, "get_all", {})
print(len(snap["entities"]), "entities as of seq", snap["seq"], flush=True)
print("registered", call(2, "register", {"since": snap["seq"]})["subscription"], flush=True)
for line in lines:
    for ch in json.loads(line)["params"].get("changes", []):
        print(ch["seq"], ch["action"], ch["key"], ch["state"], flush=True)
