#!/usr/bin/env bash
# Installs what the nagios package's tests run for real: the Nagios Core 4
# daemon (/usr/sbin/nagios4), its JSON CGI (statusjson.cgi) and check_dummy.
# The tests start their own Nagios in a temporary directory, so no system
# service is started here.
set -euo pipefail

pkgs=(nagios4-core nagios4-cgi monitoring-plugins-basic)
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
