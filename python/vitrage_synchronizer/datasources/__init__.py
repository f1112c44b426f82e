"""Vitrage datasources fed by the synchronizer sidecar.

List ``vitrage_synchronizer.datasources`` before ``vitrage.datasources`` in
``[datasources] path``: for each type in ``[datasources] types`` Vitrage then
registers the OPTS of our subpackage (``nova/instance`` for
``nova.instance``), which name our driver and Vitrage's own transformer.
The ``[synchronizer]`` options are registered when the first of them is
imported.
"""
from oslo_config import cfg

SYNCHRONIZER_OPTS = [
    cfg.StrOpt('socket', default='/run/synchronizer/synchronizer.sock',
               help='Unix socket of the synchronizer sidecar (its '
                    '"socket:" setting).'),
    cfg.StrOpt('state_dir', default='/var/lib/vitrage/synchronizer',
               help='Directory where each datasource keeps the last change '
                    'seq it applied, so that a restarted Vitrage goes on '
                    'from there. Created when missing.'),
    cfg.FloatOpt('timeout', default=60.0, min=0.1,
                 help='Seconds to wait for the sidecar to connect and '
                      'answer.'),
    cfg.StrOpt('periodic_snapshot', default='changes',
               choices=['changes', 'full'],
               help='What the periodic get_all (every [datasources] '
                    'snapshots_interval) sends. "changes": only what changed '
                    'since the last seq, as get_changes does (a full snapshot '
                    'still follows a start from scratch, a lost seq or a '
                    'seq the sidecar no longer has). "full": every entity, '
                    'each time, as Vitrage\'s own drivers do.'),
    cfg.FloatOpt('changes_wait', default=5.0, min=0,
                 help='Seconds get_changes waits for a change at the sidecar '
                      '(a "register" subscription) before answering that '
                      'nothing changed; a change that arrives meanwhile is '
                      'answered at once. With changes_interval 1 (the '
                      'default) a change reaches Vitrage within a moment '
                      'instead of a changes_interval later. 0: no wait, '
                      'every get_changes reads the change log and returns.'),
    cfg.IntOpt('changes_limit', default=20000, min=1,
               help='Most changes asked for in one "changes" call; more '
                    'calls follow until the log is read.'),
    cfg.StrOpt('stream_url', secret=True,
               help='Read the changes from the synchronizer\'s RabbitMQ '
                    'stream (its amqp-stream publisher) at this broker URL '
                    '(amqp://user:password@host:5672/vhost) instead of its '
                    'socket, so that vitrage-graph may run on another host. '
                    'The state comes from the newest snapshot in the stream '
                    'and the changes after it. Unset: the socket.'),
    cfg.StrOpt('stream', default='synchronizer.changes',
               help='The stream\'s name (the publisher\'s "stream:").'),
    cfg.IntOpt('stream_buffer', default=200000, min=1,
               help='Changes read from the stream that are kept for '
                    'get_changes; a datasource further behind takes a full '
                    'snapshot.'),
]

cfg.CONF.register_opts(SYNCHRONIZER_OPTS, group='synchronizer')


def list_opts():
    """For oslo-config-generator."""
    return [('synchronizer', SYNCHRONIZER_OPTS)]
