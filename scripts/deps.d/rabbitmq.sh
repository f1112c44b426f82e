#!/usr/bin/env bash
# RabbitMQ for the amqp listener's tests (127.0.0.1:5672, guest/guest), and
# Debian's python3-oslo.messaging, whose Notifier the tests publish with.
# Installs what is missing, starts the broker when it is not listening and
# waits until it answers. Idempotent.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../deps-lib.sh"

pkgs=(rabbitmq-server python3-oslo.messaging)
install_missing "${pkgs[@]}"

if ! listening 5672; then
	echo "rabbitmq.sh: starting rabbitmq-server" >&2
	# The Debian package's service may be unusable in a container without
	# systemd: start the broker directly, detached.
	rabbitmq-server -detached || true
fi

await_listening rabbitmq.sh 5672 RabbitMQ 120
# Listening is not enough right after a start: wait until the broker has
# booted its applications (guest user, default vhost).
timeout 120 rabbitmqctl await_startup >/dev/null
