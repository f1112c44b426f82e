# Functions the scripts in deps.d source (not run on its own: make
# test-deps runs deps.d/*.sh only).

# installed PKG: whether dpkg has PKG installed.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# apt_install [OPTION...] PKG...: apt-get install, once more after an
# apt-get update when the first try fails (a stale or missing package index).
# A lock another apt holds is waited for.
apt_install() {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=900 "$@" && return
	apt-get update -o DPkg::Lock::Timeout=900
	DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=900 "$@"
}

# install_missing PKG...: installs those of PKG not installed yet, without
# recommends.
install_missing() {
	local missing=() p
	for p in "$@"; do installed "$p" || missing+=("$p"); done
	[ ${#missing[@]} -eq 0 ] || apt_install --no-install-recommends "${missing[@]}"
}

# listening PORT: whether something accepts TCP connections on 127.0.0.1:PORT.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# await_listening WHO PORT WHAT SECONDS: waits until 127.0.0.1:PORT accepts,
# exits 1 naming WHO and WHAT after SECONDS.
await_listening() {
	local deadline=$((SECONDS + $4))
	until listening "$2"; do
		if [ $SECONDS -ge $deadline ]; then
			echo "$1: $3 is not listening on 127.0.0.1:$2 after $4s" >&2
			exit 1
		fi
		sleep 1
	done
}
