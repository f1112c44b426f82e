#!/bin/sh
# Test plugin for the exec collector: what it does depends on the file "mode"
# in the working directory.
#   dup   a listing with switch:1 three times (states a, b, c) and switch:2
#   err3  fails with exit status 3
#   err4  fails with exit status 4
case "$(cat mode)" in
dup)  echo '[{"type":"switch","id":"1","state":"a"},{"type":"switch","id":"2"},{"type":"switch","id":"1","state":"b"},{"type":"switch","id":"1","state":"c"}]' ;;
err3) echo "cannot reach the switch API" >&2; exit 3 ;;
err4) exit 4 ;;
esac
