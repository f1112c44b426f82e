#!/usr/bin/env bash
# promtool, from Debian's prometheus package: the tests of
# examples/prometheus/alerts.yml run `promtool test rules` and
# `promtool check rules`. Only promtool is used; the package's server is not
# needed (where policy-rc.d lets packages start services, Debian starts it on
# :9090 — stop it with `invoke-rc.d prometheus stop` if unwanted).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../deps-lib.sh"
command -v promtool >/dev/null 2>&1 && exit 0
echo "installing prometheus (for promtool)"
apt_install -q --no-install-recommends prometheus
command -v promtool >/dev/null 2>&1 || { echo "promtool missing after installing prometheus" >&2; exit 1; }
