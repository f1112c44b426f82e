#!/usr/bin/env bash
# Base test dependencies: the sqlite3 shell (operators' view of the
# baseline, used by the end-to-end tests) and Debian's python3 (the stdlib
# client test runs /usr/bin/python3).
set -euo pipefail
need=()
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
[ -x /usr/bin/python3 ] || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q -o DPkg::Lock::Timeout=900 "${need[@]}" || {
    apt-get update -q && apt-get install -y -q -o DPkg::Lock::Timeout=900 "${need[@]}"
  }
fi
