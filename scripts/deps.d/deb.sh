#!/usr/bin/env bash
# What the packaging tests (deb_test.go, python_pkg_test.go) and `make deb`
# use: dpkg-deb, adduser for the postinst, systemd-analyze (the systemd
# package; systemd need not be PID 1), setpriv (util-linux), Debian's pip,
# setuptools, wheel and venv to build the Python package offline, and
# py3compile/py3clean (python3-minimal). Idempotent.
set -euo pipefail

pkgs=(dpkg adduser passwd util-linux systemd python3-minimal python3-pip python3-setuptools python3-wheel python3-venv)
missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

install() {
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		-o DPkg::Lock::Timeout=900 "${missing[@]}"
}
if ! install; then
	apt-get update -o DPkg::Lock::Timeout=900
	install
fi
