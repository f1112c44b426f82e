#!/usr/bin/env bash
# Installs what the Vitrage integration test (vitrage_test.go, python/tests)
# runs for real: OpenStack Vitrage from Debian (python3-vitrage), run with
# Debian's /usr/bin/python3. Nothing is started: the test builds its own
# graph in-process. The first install takes a few minutes (about 140 MB).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../deps-lib.sh"

if /usr/bin/python3 -c 'import vitrage.entity_graph.driver_exec' 2>/dev/null; then
	exit 0
fi
apt_install python3-vitrage
/usr/bin/python3 -c 'import vitrage.entity_graph.driver_exec'
