"""Publish notifications with Debian's oslo.messaging, as an OpenStack
service does: Notifier(driver='messagingv2') on a rabbit:// transport.

usage: oslo_notify.py EXCHANGE TOPIC [KOMBU_COMPRESSION] < messages.json
messages.json: [{"publisher_id": ..., "event_type": ..., "payload": {...},
                 "priority": "info"}, ...]
EXCHANGE is the control_exchange (nova, neutron, openstack, ...).
"""
import json
import sys

from oslo_config import cfg
import oslo_messaging

URL = 'rabbit://guest:guest@127.0.0.1:5672/'


def main():
    exchange, topic = sys.argv[1], sys.argv[2]
    oslo_messaging.set_transport_defaults(control_exchange=exchange)
    conf = cfg.ConfigOpts()
    conf([], project='synchronizer-test')
    transport = oslo_messaging.get_notification_transport(conf, url=URL)
    if len(sys.argv) > 3:
        # Read when the driver's first connection is made.
        conf.set_override('kombu_compression', sys.argv[3],
                          group='oslo_messaging_rabbit')
    try:
        for m in json.load(sys.stdin):
            notifier = oslo_messaging.Notifier(
                transport, publisher_id=m['publisher_id'],
                driver='messagingv2', topics=[topic])
            send = getattr(notifier, m.get('priority', 'info').lower())
            send({}, m['event_type'], m['payload'])
    finally:
        transport.cleanup()


if __name__ == '__main__':
    main()
