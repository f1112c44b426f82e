#!/usr/bin/env bash
# Installs the real OpenStack test cloud's software (scripts/testcloud):
# Debian's python3-* packages of Keystone, Placement, Glance, Nova, Neutron,
# Cinder and Heat (the libraries, not the server packages, which expect
# systemd and debconf), the MariaDB client, and MariaDB itself where no
# server answers on 127.0.0.1:3306 (started here when needed). The
# api-paste.ini and resource_filters.json files exist only in the server
# packages: they are downloaded and unpacked, not installed, under
# /var/cache/synchronizer-testcloud. Nothing of the cloud is started here:
# the tests start it (scripts/testcloud/testcloud start). Idempotent, and a
# second run takes well under a second.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../deps-lib.sh"

CACHE=${SYNC_TESTCLOUD_CACHE:-/var/cache/synchronizer-testcloud}
pkgs=(python3-nova python3-keystone python3-placement python3-glance
	python3-neutron python3-cinder python3-heat python3-pymysql
	python3-openstackclient mariadb-client)
server_pkgs=(nova-common glance-common neutron-common cinder-common heat-common)

missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if ! listening 3306 && ! installed mariadb-server; then missing+=(mariadb-server); fi
if [ ${#missing[@]} -gt 0 ]; then
	echo "openstack.sh: installing ${missing[*]} (several minutes on a fresh machine)" >&2
	apt_install -q "${missing[@]}"
fi

if ! listening 3306; then
	echo "openstack.sh: starting MariaDB" >&2
	# No systemd in containers: start the server directly, detached.
	mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
	(setsid mysqld_safe --bind-address=127.0.0.1 >/dev/null 2>&1 &)
	await_listening openstack.sh 3306 MariaDB 60
fi
# root with an empty password over TCP, as the test cloud's script expects.
if ! mysql -h 127.0.0.1 -u root -e 'SELECT 1' >/dev/null 2>&1; then
	echo "openstack.sh: MariaDB refuses root with an empty password on 127.0.0.1" >&2
	exit 1
fi

# The server packages' files, unpacked once.
stamp="$CACHE/root/.complete"
want="${server_pkgs[*]} $(dpkg-query -W -f='${Version}' python3-nova python3-cinder python3-heat | tr '\n' ' ')"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
	echo "openstack.sh: fetching ${server_pkgs[*]} (files only, not installed)" >&2
	rm -rf "$CACHE/debs" "$CACHE/root"
	mkdir -p "$CACHE/debs" "$CACHE/root"
	(cd "$CACHE/debs" && { apt-get download "${server_pkgs[@]}" 2>/dev/null || { apt-get update -q && apt-get download "${server_pkgs[@]}"; }; })
	for d in "$CACHE"/debs/*.deb; do dpkg-deb -x "$d" "$CACHE/root"; done
	echo "$want" >"$stamp"
fi
for f in usr/share/nova-common/api-paste.ini usr/share/glance-common/glance-api-paste.ini \
	usr/share/neutron-common/api-paste.ini usr/share/cinder-common/api-paste.ini \
	etc/cinder/resource_filters.json etc/heat/api-paste.ini etc/heat/environment.d; do
	[ -e "$CACHE/root/$f" ] || { echo "openstack.sh: $CACHE/root/$f missing after unpacking" >&2; exit 1; }
done
/usr/bin/python3 -c 'import nova, keystone, placement, glance, neutron, cinder, heat, pymysql'
