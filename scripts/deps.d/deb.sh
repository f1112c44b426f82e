#!/usr/bin/env bash
# What the packaging tests (deb_test.go, python_pkg_test.go) and `make deb`
# use: dpkg-deb, adduser for the postinst, systemd-analyze (the systemd
# package; systemd need not be PID 1), setpriv (util-linux), Debian's pip,
# setuptools, wheel and venv to build the Python package offline, and
# py3compile/py3clean (python3-minimal). Idempotent.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../deps-lib.sh"

pkgs=(dpkg adduser passwd util-linux systemd python3-minimal python3-pip python3-setuptools python3-wheel python3-venv)
install_missing "${pkgs[@]}"
