#!/usr/bin/env bash
# Builds the two Debian packages with dpkg-deb, from this checkout and what
# is installed (Go, Debian's python3 with setuptools, pip and wheel):
# nothing is downloaded.
#
#   packaging/build-deb.sh OUTDIR VERSION
#
#   synchronizer_<v>_<arch>.deb            /usr/bin/synchronizer, the unit,
#                                          /etc/synchronizer/config.yaml
#   python3-vitrage-synchronizer_<v>_all.deb  the Vitrage datasources in
#                                          /usr/lib/python3/dist-packages
set -euo pipefail

out=${1:?usage: build-deb.sh OUTDIR VERSION}
version=${2:?usage: build-deb.sh OUTDIR VERSION}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
# One build per directory: the tests take the only .deb of each package.
rm -f "$out"/synchronizer_*.deb "$out"/python3-vitrage-synchronizer_*.deb

# A Debian version starts with a digit and, for a native package, has no
# '-': v1.2.3-4-gabcdef-dirty -> 1.2.3+4+gabcdef+dirty; an untagged
# 1a2b3c4-dirty (git describe --always) -> 0.0~git.1a2b3c4.dirty.
if [[ $version =~ ^v?[0-9]+(\.[0-9]+)+ ]]; then
	debver=${version#v}
	debver=${debver//-/+}
else
	debver=0.0~git.${version//-/.}
fi
arch=$(dpkg --print-architecture)
maint="synchronizer developers <synchronizer@localhost>"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- synchronizer -------------------------------------------------------
pkg=$work/synchronizer
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/etc/synchronizer" \
	"$pkg/lib/systemd/system" "$pkg/usr/share/doc/synchronizer"
# Static (no cgo): the binary depends on nothing, not even libc's version.
(cd "$root" && CGO_ENABLED=0 go build -trimpath -buildvcs=auto \
	-ldflags "-s -w -X github.com/openstack-synchronizer/synchronizer/buildinfo.Version=$version" \
	-o "$pkg/usr/bin/synchronizer" .)
install -m 0644 "$root/packaging/config.yaml" "$pkg/etc/synchronizer/config.yaml"
install -m 0644 "$root/packaging/synchronizer.service" "$pkg/lib/systemd/system/synchronizer.service"
install -m 0644 "$root/README.md" "$root/docs/operations.md" "$root/docs/contract.md" "$pkg/usr/share/doc/synchronizer/"
for s in postinst prerm postrm; do
	install -m 0755 "$root/packaging/deb/synchronizer/$s" "$pkg/DEBIAN/$s"
done
echo /etc/synchronizer/config.yaml >"$pkg/DEBIAN/conffiles"
cat >"$pkg/DEBIAN/control" <<EOF
Package: synchronizer
Version: $debver
Architecture: $arch
Maintainer: $maint
Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Depends: adduser
Suggests: python3-vitrage-synchronizer
Section: net
Priority: optional
Description: change feed of OpenStack, Nagios and topology entities for Vitrage
 The synchronizer polls OpenStack (Nova, Neutron, Cinder, Heat), Nagios, static
 topology files and exec plugins, listens to the OpenStack notification bus,
 keeps a baseline in SQLite and pushes only what changed to its consumers
 (Vitrage's datasources) over JSON-RPC on a Unix socket.
 .
 This package runs it as the systemd service synchronizer.service, as the
 system user synchronizer, configured in /etc/synchronizer/config.yaml.
EOF
dpkg-deb --root-owner-group --build "$pkg" "$out/synchronizer_${debver}_${arch}.deb"

# --- python3-vitrage-synchronizer ----------------------------------------
py=$work/python3-vitrage-synchronizer
site=$py/usr/lib/python3/dist-packages
install -d "$py/DEBIAN" "$site" "$py/usr/share/doc/python3-vitrage-synchronizer"
# Built from a copy: setuptools writes build/ and *.egg-info beside the
# sources.
cp -r "$root/python" "$work/python-src"
find "$work/python-src" -name __pycache__ -prune -exec rm -rf {} +
(cd "$work" && /usr/bin/python3 -m pip wheel --quiet --no-index --no-build-isolation \
	--no-deps --no-cache-dir -w "$work/wheel" "$work/python-src")
/usr/bin/python3 -m zipfile -e "$work"/wheel/vitrage_synchronizer-*.whl "$site"
# dpkg owns these files, not pip: no RECORD for pip to uninstall from.
rm -f "$site"/vitrage_synchronizer-*.dist-info/RECORD
echo dpkg >"$(echo "$site"/vitrage_synchronizer-*.dist-info)/INSTALLER"
find "$site" -type d -exec chmod 0755 {} + && find "$site" -type f -exec chmod 0644 {} +
install -m 0644 "$root/python/README.md" "$py/usr/share/doc/python3-vitrage-synchronizer/"
for s in postinst prerm; do
	install -m 0755 "$root/packaging/deb/python3-vitrage-synchronizer/$s" "$py/DEBIAN/$s"
done
cat >"$py/DEBIAN/control" <<EOF
Package: python3-vitrage-synchronizer
Version: $debver
Architecture: all
Maintainer: $maint
Installed-Size: $(du -sk --exclude=DEBIAN "$py" | cut -f1)
Depends: python3:any (>= 3.9), python3-vitrage, python3-oslo.config, python3-oslo.log
Enhances: python3-vitrage
Suggests: synchronizer
Section: python
Priority: optional
Description: Vitrage datasources fed by the synchronizer
 Drivers for Vitrage's nova.instance, nova.host, nova.zone, neutron.network,
 neutron.port, cinder.volume, heat.stack, nagios and static datasources that
 read the synchronizer's change log over its Unix socket instead of polling
 OpenStack, Nagios and YAML files. Enable them with
 "[datasources] path = vitrage_synchronizer.datasources,vitrage.datasources"
 in vitrage.conf.
EOF
dpkg-deb --root-owner-group --build "$py" "$out/python3-vitrage-synchronizer_${debver}_all.deb"
