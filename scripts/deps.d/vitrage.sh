#!/usr/bin/env bash
# Installs what the Vitrage integration test (vitrage_test.go, python/tests)
# runs for real: OpenStack Vitrage from Debian (python3-vitrage), run with
# Debian's /usr/bin/python3. Nothing is started: the test builds its own
# graph in-process. The first install takes a few minutes (about 140 MB).
set -euo pipefail

if /usr/bin/python3 -c 'import vitrage.entity_graph.driver_exec' 2>/dev/null; then
	exit 0
fi
install() {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=900 python3-vitrage
}
if ! install; then
	apt-get update -o DPkg::Lock::Timeout=900
	install
fi
/usr/bin/python3 -c 'import vitrage.entity_graph.driver_exec'
