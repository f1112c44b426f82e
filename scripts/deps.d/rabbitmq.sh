#!/usr/bin/env bash
# RabbitMQ for the amqp listener's tests (127.0.0.1:5672, guest/guest), and
# Debian's python3-oslo.messaging, whose Notifier the tests publish with.
# Installs what is missing, starts the broker when it is not listening and
# waits until it answers. Idempotent.
set -euo pipefail

pkgs=(rabbitmq-server python3-oslo.messaging)
missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	install() {
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
			-o DPkg::Lock::Timeout=900 "${missing[@]}"
	}
	if ! install; then
		apt-get update -o DPkg::Lock::Timeout=900
		install
	fi
fi

listening() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if ! listening; then
	echo "rabbitmq.sh: starting rabbitmq-server" >&2
	# The Debian package's service may be unusable in a container without
	# systemd: start the broker directly, detached.
	rabbitmq-server -detached || true
fi

deadline=$((SECONDS + 120))
until listening; do
	if [ $SECONDS -ge $deadline ]; then
		echo "rabbitmq.sh: RabbitMQ is not listening on 127.0.0.1:5672 after 120s" >&2
		exit 1
	fi
	sleep 1
done
# Listening is not enough right after a start: wait until the broker has
# booted its applications (guest user, default vhost).
timeout 120 rabbitmqctl await_startup >/dev/null
