#!/bin/sh
# A plugin whose output never ends: over max_output it must be stopped and
# reported as over the limit. Its pid goes to $1.
echo $$ > "$1"
printf '{"entities": ['
while :; do printf '{"type": "switch", "id": "x"},'; done
