"""Builds each datasource's OPTS from Vitrage's own."""
from oslo_config import cfg
from oslo_utils import importutils

from vitrage.common.constants import DatasourceOpts as DSOpts
from vitrage.common.constants import UpdateMethod

_OURS = (DSOpts.DRIVER, DSOpts.UPDATE_METHOD, DSOpts.CHANGES_INTERVAL)


def datasource_opts(name, driver, changes_interval=1, extra=(),
                    transformer=None):
    """Vitrage's OPTS for ``name`` with our driver, pull and an interval.

    Every other option of Vitrage's datasource (its transformer, nagios'
    config_file, ...) is kept, since its transformer may read them.
    """
    stock = importutils.import_module('vitrage.datasources.' + name).OPTS
    ours = _OURS + ((DSOpts.TRANSFORMER,) if transformer else ())
    opts = [o for o in stock if o.dest not in ours]
    if transformer:
        opts.append(cfg.StrOpt(DSOpts.TRANSFORMER, default=transformer,
                               required=True,
                               help="Transformer class path: Vitrage's own, "
                                    'taking our delete rows too.'))
    opts += [
        cfg.StrOpt(DSOpts.DRIVER, default=driver, required=True,
                   help='Driver class path: the synchronizer replaces '
                        "Vitrage's own driver."),
        cfg.StrOpt(DSOpts.UPDATE_METHOD, default=UpdateMethod.PULL,
                   required=True,
                   help='pull: get_changes every changes_interval seconds '
                        'reads what changed from the synchronizer.'),
        cfg.IntOpt(DSOpts.CHANGES_INTERVAL, default=changes_interval,
                   min=1,
                   help='Seconds between the starts of two get_changes. '
                        'Each waits up to [synchronizer] changes_wait for '
                        'a change, so at 1 a change is applied within a '
                        'moment while an idle datasource calls the '
                        'sidecar once per changes_wait.'),
    ]
    return opts + list(extra)
