#!/bin/sh
# A plugin that prints its listing, closes stdout and lingers (a cleanup that
# hangs): the poll succeeds with the listing, and the plugin, with the child
# it started, is killed. Its pid goes to $1, the child's to $2.
echo $$ > "$1"
sleep 300 >/dev/null 2>&1 </dev/null &
echo $! > "$2"
echo '[{"type": "switch", "id": "sw-1"}, {"type": "switch", "id": "sw-2"}]'
exec >&-
sleep 300
