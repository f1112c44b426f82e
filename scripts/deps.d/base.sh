#!/usr/bin/env bash
# Base test dependencies: the sqlite3 shell (operators' view of the
# baseline, used by the end-to-end tests) and Debian's python3 (the stdlib
# client test runs /usr/bin/python3).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../deps-lib.sh"
need=()
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
[ -x /usr/bin/python3 ] || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt_install -q "${need[@]}"
fi
