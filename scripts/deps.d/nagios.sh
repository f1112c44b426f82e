#!/usr/bin/env bash
# Installs what the nagios package's tests run for real: the Nagios Core 4
# daemon (/usr/sbin/nagios4), its JSON CGI (statusjson.cgi) and check_dummy.
# The tests start their own Nagios in a temporary directory, so no system
# service is started here.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../deps-lib.sh"

pkgs=(nagios4-core nagios4-cgi monitoring-plugins-basic)
install_missing "${pkgs[@]}"
