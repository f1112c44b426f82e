#!/bin/sh
# A plugin that starts a background child with its output closed (so it does
# not hold the pipe), writes the child's pid to $1, prints a valid listing and
# exits 0. The child would sleep on after the poll unless its process group
# is killed.
sleep 300 >/dev/null 2>&1 </dev/null &
echo $! > "$1"
echo '{"entities": [{"type": "switch", "id": "sw-1"}], "types": ["switch"]}'
