#!/usr/bin/python3
"""The project's real OpenStack test cloud on 127.0.0.1.

Keystone, Placement, Glance, Nova (api, conductor, scheduler, compute with
the fake driver), Neutron (ML2, no agents), Cinder (api, scheduler) and Heat
(api, engine) from Debian's python3-* packages, backed by MariaDB on
127.0.0.1:3306 and a RabbitMQ vhost of the cloud's own. Run it with Debian's
/usr/bin/python3 (scripts/testcloud/testcloud is the wrapper):

    testcloud start     set up what is missing, start every service, wait
    testcloud stop      stop every service (the databases stay: warm start)
    testcloud status    which services run and answer (exit 1 if one does not)
    testcloud reset     stop, then drop the databases, the vhost and the state
    testcloud env       the OS_* variables of the admin user, for a shell

openstack/README.md ("The real test cloud") says what is configured and why.
Only the standard library is used here; the services are started as their
modules' main() (eventlet services) or under a small threaded WSGI server
(Keystone, Placement).
"""

import base64
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

PY = "/usr/bin/python3"
STATE = os.environ.get("SYNC_TESTCLOUD_DIR", "/var/lib/synchronizer-testcloud")
CACHE = os.environ.get("SYNC_TESTCLOUD_CACHE", "/var/cache/synchronizer-testcloud")
CONF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf")
PKGROOT = os.path.join(CACHE, "root")  # the server packages' files, from deps.d/openstack.sh
HOST = "127.0.0.1"
# A second cloud on the same machine (another checkout testing another
# version) takes an offset: its ports are the standard ones plus the
# offset, its databases, vhost and state its own. Use it with its own
# SYNC_TESTCLOUD_DIR.
OFFSET = int(os.environ.get("SYNC_TESTCLOUD_PORT_OFFSET", "0"))
SUFFIX = "" if OFFSET == 0 else str(OFFSET)
VHOST = "synchronizer-testcloud" + ("-" + SUFFIX if SUFFIX else "")
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/" + VHOST
TRANSPORT = "rabbit://guest:guest@127.0.0.1:5672/" + VHOST
DB_USER, DB_PASS, DB_PREFIX = "testcloud", "testcloud-db", "tc%s_" % SUFFIX
ADMIN_PASS = "testcloud-admin"
SERVICE_PASS = "testcloud-service"
REGION = "RegionOne"
COMPUTE_HOST = "testcloud-compute"
# Short enough that a test run outlives its first tokens (the collector must
# renew them). Not 2 minutes or less: the collector renews a token that
# expires within 2 minutes before every poll, and a new token every poll
# makes every service validate it again (Keystone then eats a core).
TOKEN_EXPIRATION = int(os.environ.get("SYNC_TESTCLOUD_TOKEN_EXPIRATION", "150"))
NOVA_MAX_LIMIT = 20
PORTS = {"keystone": 5000, "placement": 8778, "glance": 9292, "neutron": 9696,
         "nova-api": 8774, "cinder-api": 8776, "heat-api": 8004}
PORTS = {k: v + OFFSET for k, v in PORTS.items()}
KEYSTONE = "http://%s:%d" % (HOST, PORTS["keystone"])
NOVA_URL = "http://%s:%d/v2.1" % (HOST, PORTS["nova-api"])
NEUTRON_URL = "http://%s:%d" % (HOST, PORTS["neutron"])
GLANCE_URL = "http://%s:%d" % (HOST, PORTS["glance"])
PLACEMENT_URL = "http://%s:%d" % (HOST, PORTS["placement"])
CINDER_URL = "http://%s:%d/v3" % (HOST, PORTS["cinder-api"])
HEAT_URL = "http://%s:%d/v1" % (HOST, PORTS["heat-api"])
DATABASES = ["keystone", "placement", "glance", "neutron", "nova_api", "nova",
             "nova_cell0", "cinder", "heat"]
# Written to STATE/setup-done once the databases, users and catalog exist;
# `reset` removes it. A change of the config files alone only restarts the
# services.
SETUP_VERSION = "3"

# name -> (module whose main() runs it, config files); in start order.
# Keystone and Placement are WSGI apps served by this script itself.
SERVICES = [
    ("keystone", None, None),
    ("placement", None, None),
    ("glance", "glance.cmd.api", ["glance-api.conf"]),
    ("neutron", "neutron.cmd.eventlet.server", ["neutron.conf", "ml2_conf.ini"]),
    ("cinder-api", "cinder.cmd.api", ["cinder.conf"]),
    ("cinder-scheduler", "cinder.cmd.scheduler", ["cinder.conf"]),
    ("cinder-volume", "cinder.cmd.volume", ["cinder.conf"]),
    ("heat-api", "heat.cmd.api", ["heat.conf"]),
    ("heat-engine", "heat.cmd.engine", ["heat.conf"]),
    ("nova-conductor", "nova.cmd.conductor", ["nova.conf"]),
    ("nova-scheduler", "nova.cmd.scheduler", ["nova.conf"]),
    ("nova-api", "nova.cmd.api", ["nova.conf"]),
    ("nova-compute", "nova.cmd.compute", ["nova-compute.conf"]),
]
NAMES = [s[0] for s in SERVICES]


def log(msg):
    print("testcloud: %s" % msg, file=sys.stderr, flush=True)


def path(*p):
    return os.path.join(STATE, *p)


# ---------------------------------------------------------------- configs

def dburl(db):
    return "mysql+pymysql://%s:%s@%s:3306/%s%s?charset=utf8" % (
        DB_USER, DB_PASS, HOST, DB_PREFIX, db)


def template(name, **values):
    """The text of conf/name, its {fields} filled in: each config file's
    own lines stand as a file there, and this script puts them together."""
    with open(os.path.join(CONF, name)) as f:
        text = f.read()
    return text.format(**values) if values else text


def authtoken(user):
    return template("authtoken.conf", ks=KEYSTONE, user=user, pw=SERVICE_PASS, region=REGION)


def service_auth(section, user="nova"):
    return template("service-auth.conf", s=section, ks=KEYSTONE, user=user, pw=SERVICE_PASS, region=REGION)


def common(name, notify):
    """[DEFAULT] lines every service shares, and its notification driver."""
    d = template("default.conf", log=path("log", name + ".log"), tr=TRANSPORT, state=path("lib", name))
    n = template("notifications.conf", drv="messagingv2" if notify else "noop", lock=path("lock", name))
    return d, n


def configs():
    """Every config file of the cloud, by name under STATE/etc."""
    c = {}
    d, n = common("keystone", False)
    c["keystone.conf"] = d + n + template("keystone.conf", db=dburl("keystone"), exp=TOKEN_EXPIRATION,
        fk=path("lib", "keystone", "fernet-keys"),
        ck=path("lib", "keystone", "credential-keys"))

    d, n = common("placement", False)
    c["placement.conf"] = d + n + template("placement.conf", db=dburl("placement")) + authtoken("placement")

    d, n = common("glance", False)
    c["glance-api.conf"] = d + template("glance-api.conf", h=HOST, n=n, db=dburl("glance"), gport=PORTS["glance"],
        paste=os.path.join(PKGROOT, "usr/share/glance-common/glance-api-paste.ini"),
        images=path("lib", "glance", "images")) + authtoken("glance")

    d, n = common("neutron", True)
    c["neutron.conf"] = d + template("neutron.conf", h=HOST, n=n, db=dburl("neutron"), nport=PORTS["neutron"],
        paste=os.path.join(PKGROOT, "usr/share/neutron-common/api-paste.ini")) + authtoken("neutron")
    c["ml2_conf.ini"] = template("ml2_conf.ini")

    d, n = common("nova", True)
    nova = d + template("nova-compute.conf", h=HOST, host=COMPUTE_HOST, cport=PORTS["nova-api"], inst=path("lib", "nova", "instances"), n=n,
        maxl=NOVA_MAX_LIMIT, region=REGION,
        paste=os.path.join(PKGROOT, "usr/share/nova-common/api-paste.ini"))
    nova += service_auth("placement", "nova") + "\n" + service_auth("neutron", "nova") + "\n"
    c["nova-compute.conf"] = nova
    c["nova.conf"] = nova + template("nova-database.conf", db=dburl("nova"), api=dburl("nova_api")) + authtoken("nova")

    d, n = common("cinder", True)
    c["cinder.conf"] = d + template("cinder.conf", h=HOST, n=n, db=dburl("cinder"), vport=PORTS["cinder-api"],
        paste=os.path.join(PKGROOT, "usr/share/cinder-common/api-paste.ini"),
        filters=os.path.join(PKGROOT, "etc/cinder/resource_filters.json")) + authtoken("cinder")

    d, n = common("heat", True)
    c["heat.conf"] = d + template("heat.conf", h=HOST, n=n, region=REGION, ks=KEYSTONE, hport=PORTS["heat-api"], pw=SERVICE_PASS, db=dburl("heat"),
        envdir=os.path.join(PKGROOT, "etc/heat/environment.d"),
        paste=os.path.join(PKGROOT, "etc/heat/api-paste.ini"),
        policy=path("etc", "heat-policy.yaml")) + authtoken("heat")
    # Zed's default for the global stack list is a system-scoped reader;
    # the collector logs in project-scoped, as Vitrage's own heat driver
    # does, so the cloud grants it to a project admin (operators do the
    # same, openstack/README.md).
    c["heat-policy.yaml"] = '"stacks:global_index": "rule:context_is_admin"\n'
    return c


def write_configs():
    for d in ("etc", "log", "run", "lock", "lib"):
        os.makedirs(path(d), exist_ok=True)
    for svc in ("keystone", "placement", "glance", "neutron", "nova", "cinder", "heat"):
        os.makedirs(path("lock", svc), exist_ok=True)
        os.makedirs(path("lib", svc), exist_ok=True)
    os.makedirs(path("lib", "glance", "images"), exist_ok=True)
    os.makedirs(path("lib", "nova", "instances"), exist_ok=True)
    for name, text in configs().items():
        p = path("etc", name)
        with open(p + ".tmp", "w") as f:
            f.write(text)
        os.chmod(p + ".tmp", 0o600)
        os.replace(p + ".tmp", p)


def config_digest():
    """Identifies the configuration the running services were started with."""
    h = hashlib.sha256()
    for name, text in sorted(configs().items()):
        h.update(name.encode() + b"\0" + text.encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- helpers

def run(args, what, env=None, timeout=600):
    t0 = time.time()
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=env, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (what, p.returncode,
                                                    p.stdout.decode(errors="replace")[-3000:]))
    log("%s: %.1fs" % (what, time.time() - t0))
    return p.stdout.decode(errors="replace")


def pymain(module, prog, *args):
    """argv that runs module.main() as the console script prog would."""
    code = "import sys; sys.argv[0] = %r; from %s import main; sys.exit(main())" % (prog, module)
    return [PY, "-c", code] + list(args)


def sql(statements):
    run(["mysql", "-h", HOST, "-P", "3306", "-u", "root", "-e", statements], "mariadb")


def rabbitmqctl(*args, ok_codes=(0,)):
    p = subprocess.run(["rabbitmqctl", "-q"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    if p.returncode not in ok_codes:
        raise RuntimeError("rabbitmqctl %s: %s" % (" ".join(args), p.stdout.decode(errors="replace")))
    return p.stdout.decode(errors="replace")


def listening(port):
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def http_status(url, headers=None, timeout=5):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, http.client.HTTPException):
        return 0


class Keystone:
    """A few Keystone v3 calls as the admin user (urllib, no client library)."""

    def __init__(self):
        self.token = None

    def login(self):
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASS}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
        r, hdr = self.call("POST", "/v3/auth/tokens", body, auth=False, headers=True)
        self.token = hdr["X-Subject-Token"]
        return r

    def call(self, method, url, body=None, auth=True, headers=False, base=KEYSTONE, ok=(200, 201, 202, 204)):
        data = json.dumps(body).encode() if body is not None else None
        h = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            h["X-Auth-Token"] = self.token
        req = urllib.request.Request(base + url, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw = r.read()
                out = json.loads(raw) if raw else {}
                return (out, r.headers) if headers else out
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return ({}, e.headers) if headers else {}
            raise RuntimeError("%s %s%s: %d %s" % (method, base, url, e.code, e.read()[:500]))

    def find(self, collection, name):
        for item in self.call("GET", "/v3/%s?name=%s" % (collection, name))[collection]:
            return item["id"]
        return None

    def ensure(self, collection, kind, name, extra):
        i = self.find(collection, name)
        if i:
            return i
        return self.call("POST", "/v3/" + collection, {kind: dict(name=name, **extra)})[kind]["id"]


# ---------------------------------------------------------------- set-up

def setup_backing():
    if not listening(3306):
        raise RuntimeError("MariaDB does not answer on 127.0.0.1:3306 (scripts/deps.d/openstack.sh starts it)")
    if not listening(5672):
        raise RuntimeError("RabbitMQ does not answer on 127.0.0.1:5672 (scripts/deps.d/rabbitmq.sh starts it)")
    stmts = []
    for db in DATABASES:
        stmts.append("CREATE DATABASE IF NOT EXISTS %s%s CHARACTER SET utf8;" % (DB_PREFIX, db))
    for h in ("127.0.0.1", "localhost"):
        stmts.append("CREATE USER IF NOT EXISTS '%s'@'%s' IDENTIFIED BY '%s';" % (DB_USER, h, DB_PASS))
        stmts.append("GRANT ALL PRIVILEGES ON `%s%%`.* TO '%s'@'%s';" % (DB_PREFIX.replace("_", "\\_"), DB_USER, h))
    sql("\n".join(stmts))
    rabbitmqctl("add_vhost", VHOST, ok_codes=(0, 70))  # 70: exists already
    rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
    # oslo's notifier declares and fills a queue per topic that nobody reads
    # here (notifications.info, versioned_notifications.info, and
    # vitrage_notifications.info between two runs of stock Vitrage): cap them.
    rabbitmqctl("set_policy", "-p", VHOST, "--apply-to", "queues", "testcloud-cap",
                "^((versioned_)?notifications|vitrage_notifications)\\.", '{"max-length": 1000}')


def sync_keystone():
    conf = ["--config-file", path("etc", "keystone.conf")]
    for d in ("fernet-keys", "credential-keys"):
        os.makedirs(path("lib", "keystone", d), exist_ok=True)
    run(["keystone-manage"] + conf + ["db_sync"], "keystone db_sync")
    # What fernet_setup and credential_setup write (a staged key 0 and a
    # primary key 1), without two more Python start-ups.
    for d in ("fernet-keys", "credential-keys"):
        for k in ("0", "1"):
            p = path("lib", "keystone", d, k)
            if not os.path.exists(p):
                with open(p, "wb") as f:
                    f.write(base64.urlsafe_b64encode(os.urandom(32)))
                os.chmod(p, 0o600)
    url = KEYSTONE + "/v3/"
    run(["keystone-manage"] + conf + ["bootstrap", "--bootstrap-password", ADMIN_PASS,
                                      "--bootstrap-admin-url", url, "--bootstrap-internal-url", url,
                                      "--bootstrap-public-url", url, "--bootstrap-region-id", REGION],
        "keystone bootstrap")


def sync_nova():
    conf = ["--config-file", path("etc", "nova.conf")]
    manage = lambda *a: pymain("nova.cmd.manage", "nova-manage", *(conf + list(a)))
    run(manage("api_db", "sync"), "nova api_db sync")
    run(manage("cell_v2", "map_cell0", "--database_connection", dburl("nova_cell0")), "nova map_cell0")
    out = subprocess.run(manage("cell_v2", "list_cells"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if b" cell1 " not in out.stdout:
        run(manage("cell_v2", "create_cell", "--name", "cell1"), "nova create_cell")
    run(manage("db", "sync"), "nova db sync")


def sync_others():
    run(["placement-manage", "--config-file", path("etc", "placement.conf"), "db", "sync"], "placement db sync")
    run(pymain("glance.cmd.manage", "glance-manage", "--config-file", path("etc", "glance-api.conf"), "db_sync"),
        "glance db_sync")
    run(pymain("neutron.db.migration.cli", "neutron-db-manage", "--config-file", path("etc", "neutron.conf"),
               "--config-file", path("etc", "ml2_conf.ini"), "upgrade", "heads"), "neutron upgrade heads")
    run(pymain("cinder.cmd.manage", "cinder-manage", "--config-file", path("etc", "cinder.conf"), "db", "sync"),
        "cinder db sync")
    run(pymain("heat.cmd.manage", "heat-manage", "--config-file", path("etc", "heat.conf"), "db_sync"),
        "heat db_sync")


def parallel(*fns):
    errs = []

    def wrap(fn):
        try:
            fn()
        except Exception as e:  # reported below, with the others
            errs.append(e)
    ts = [threading.Thread(target=wrap, args=(f,)) for f in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise RuntimeError("; ".join(str(e) for e in errs))


def catalog(ks):
    """Projects, service users, roles and the catalog (Keystone running)."""
    ks.login()
    service = ks.ensure("projects", "project", "service", {"domain_id": "default"})
    admin_project = ks.find("projects", "admin")
    admin_role = ks.find("roles", "admin")
    admin_user = ks.find("users", "admin")
    roles = {r: ks.ensure("roles", "role", r, {}) for r in ("heat_stack_owner", "heat_stack_user", "member", "reader")}
    ks.call("PUT", "/v3/projects/%s/users/%s/roles/%s" % (admin_project, admin_user, roles["heat_stack_owner"]))
    for user in ("placement", "glance", "neutron", "nova", "cinder", "heat"):
        uid = ks.ensure("users", "user", user, {"domain_id": "default", "password": SERVICE_PASS})
        ks.call("PUT", "/v3/projects/%s/users/%s/roles/%s" % (service, uid, admin_role))
    entries = [
        ("placement", "placement", PLACEMENT_URL),
        ("glance", "image", GLANCE_URL),
        ("neutron", "network", NEUTRON_URL),
        ("nova", "compute", NOVA_URL),
        ("cinderv3", "volumev3", CINDER_URL + "/%(project_id)s"),
        ("cinder", "block-storage", CINDER_URL + "/%(project_id)s"),
        ("heat", "orchestration", HEAT_URL + "/%(tenant_id)s"),
    ]
    services = {s["type"]: s["id"] for s in ks.call("GET", "/v3/services")["services"]}
    for name, typ, url in entries:
        sid = services.get(typ) or ks.call("POST", "/v3/services", {"service": {"name": name, "type": typ}})["service"]["id"]
        have = {e["interface"] for e in ks.call("GET", "/v3/endpoints?service_id=" + sid)["endpoints"]}
        for iface in ("public", "internal", "admin"):
            if iface not in have:
                ks.call("POST", "/v3/endpoints", {"endpoint": {"service_id": sid, "interface": iface,
                                                               "url": url, "region_id": REGION}})


def seed(ks):
    """The flavor and the 1 MiB image servers are booted from (services running)."""
    ks.login()
    nova = NOVA_URL
    flavors = ks.call("GET", "/flavors", base=nova)["flavors"]
    if not any(f["name"] == "m1.tiny" for f in flavors):
        ks.call("POST", "/flavors", {"flavor": {"name": "m1.tiny", "id": "1", "ram": 64, "vcpus": 1, "disk": 1}},
                base=nova)
    glance = GLANCE_URL
    images = ks.call("GET", "/v2/images?name=testcloud-image", base=glance)["images"]
    if images and images[0]["status"] == "active":
        return
    for im in images:
        ks.call("DELETE", "/v2/images/" + im["id"], base=glance)
    im = ks.call("POST", "/v2/images", {"name": "testcloud-image", "disk_format": "raw",
                                        "container_format": "bare", "visibility": "public"}, base=glance)
    req = urllib.request.Request(glance + "/v2/images/%s/file" % im["id"], data=b"\0" * (1 << 20), method="PUT",
                                 headers={"X-Auth-Token": ks.token, "Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req, timeout=60).read()


# ---------------------------------------------------------------- processes

WSGI = r"""
import sys, os, socketserver, wsgiref.simple_server as ws
name, port = sys.argv[1], int(sys.argv[2])
del sys.argv[1:]  # the apps parse the command line as their own
if name == "keystone":
    from keystone.server.wsgi import initialize_public_application as load
else:
    from placement.wsgi import init_application as load
app = load()
class Server(socketserver.ThreadingMixIn, ws.WSGIServer):
    daemon_threads = True
class Handler(ws.WSGIRequestHandler):
    def address_string(self):
        return self.client_address[0]
srv = ws.make_server("127.0.0.1", port, app, server_class=Server, handler_class=Handler)
srv.serve_forever()
"""

# Debian's python3-oslo.messaging rebuilds Cinder's request context with
# from_dict, which passes read_deleted=None and raises: no notification is
# sent and API calls that notify answer 500. Default it to 'no' first.
CINDER = r"""
import sys
from cinder import context
orig = context.RequestContext.from_dict.__func__
def from_dict(cls, values):
    values = dict(values)
    if values.get('read_deleted') is None:
        values['read_deleted'] = 'no'
    return orig(cls, values)
context.RequestContext.from_dict = classmethod(from_dict)
import importlib
sys.argv[0] = sys.argv.pop(1)
sys.exit(importlib.import_module(sys.argv[0]).main())
"""


def argv(name):
    for n, module, confs in SERVICES:
        if n != name:
            continue
        if module is None:
            return [PY, "-c", WSGI, name, str(PORTS[name])]
        cf = []
        for c in confs:
            cf += ["--config-file", path("etc", c)]
        # One log per process (they share config files).
        cf += ["--log-file", path("log", name + ".log")]
        if name.startswith("cinder"):
            return [PY, "-c", CINDER, module] + cf
        return pymain(module, name) + cf
    raise KeyError(name)


def pidfile(name):
    return path("run", name + ".pid")


def running_pid(name):
    try:
        with open(pidfile(name)) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    # The pid may have been reused after a reboot: check it is a Python
    # (the services rewrite their titles, so not more than that).
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read()
        # Empty: just forked by spawn, not yet exec'd.
        if cmd and b"python" not in cmd:
            return None
    except OSError:
        return None
    return pid if alive(pid) else None


def spawn(name):
    pid = running_pid(name)
    if pid:
        return pid
    env = dict(os.environ)
    env["OS_KEYSTONE_CONFIG_DIR"] = path("etc")
    env["OS_PLACEMENT_CONFIG_DIR"] = path("etc")
    env.pop("PYTHONPATH", None)
    with open(path("log", name + ".out"), "ab") as out:
        p = subprocess.Popen(argv(name), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             env=env, cwd=STATE, start_new_session=True)
    with open(pidfile(name), "w") as f:
        f.write("%d\n" % p.pid)
    return p.pid


def ready(name, token=None):
    """Whether a started service answers (HTTP services) or registered."""
    port = PORTS.get(name)
    if name == "neutron":
        # Neutron 21 answers 500 to the first port list until another query
        # has configured the ORM mappers: ask for networks first, then ports.
        h = {"X-Auth-Token": token} if token else {}
        if http_status(NEUTRON_URL + "/v2.0/networks?limit=1", h) != 200:
            return False
        return http_status(NEUTRON_URL + "/v2.0/ports?limit=1", h) == 200
    if port:
        return http_status("http://%s:%d/" % (HOST, port)) in (200, 300)
    return True


def wait_ready(names, timeout, token_fn=None):
    deadline = time.time() + timeout
    pending = list(names)
    while pending:
        for name in list(pending):
            if not running_pid(name):
                raise RuntimeError("%s exited at start; see %s and %s" % (
                    name, path("log", name + ".log"), path("log", name + ".out")))
            if ready(name, token_fn() if token_fn and name == "neutron" else None):
                pending.remove(name)
        if pending and time.time() > deadline:
            raise RuntimeError("not answering after %ds: %s (logs in %s)" % (timeout, ", ".join(pending), path("log")))
        if pending:
            time.sleep(0.5)


def compute_up(ks):
    """nova-compute is up and its host is mapped into cell1."""
    ks.login()
    nova = NOVA_URL
    svcs = ks.call("GET", "/os-services?binary=nova-compute", base=nova)["services"]
    if not any(s["state"] == "up" and s["host"] == COMPUTE_HOST for s in svcs):
        return False
    hv = ks.call("GET", "/os-hypervisors", base=nova)["hypervisors"]
    return len(hv) > 0


def stop_services(names=None, timeout=20):
    names = names or list(reversed(NAMES))
    pids = {}
    for n in names:
        pid = running_pid(n)
        if pid:
            pids[n] = pid
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while pids and time.time() < deadline:
        for n, pid in list(pids.items()):
            if not alive(pid):
                del pids[n]
        time.sleep(0.2)
    for n, pid in pids.items():
        log("%s did not stop within %ds after SIGTERM: SIGKILL" % (n, timeout))
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    for n in names:
        with contextlib.suppress(OSError):
            os.unlink(pidfile(n))


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie of ours (we are not its parent here) counts as gone.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# ---------------------------------------------------------------- commands

@contextlib.contextmanager
def locked():
    os.makedirs(STATE, exist_ok=True)
    with open(os.path.join(STATE, ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def cloud_info():
    return {
        "auth_url": KEYSTONE + "/v3", "username": "admin", "password": ADMIN_PASS,
        "project_name": "admin", "user_domain_name": "Default", "project_domain_name": "Default",
        "region": REGION, "amqp_url": AMQP_URL, "vhost": VHOST, "compute_host": COMPUTE_HOST,
        "flavor": "1", "image_name": "testcloud-image", "nova_max_limit": NOVA_MAX_LIMIT,
        "token_expiration": TOKEN_EXPIRATION, "log_dir": path("log"), "state_dir": STATE,
        "endpoints": {"compute": NOVA_URL, "network": NEUTRON_URL, "image": GLANCE_URL,
                      "placement": PLACEMENT_URL, "volume": CINDER_URL, "orchestration": HEAT_URL},
    }


def write_info():
    info = cloud_info()
    with open(path("cloud.json.tmp"), "w") as f:
        json.dump(info, f, indent=2)
    os.replace(path("cloud.json.tmp"), path("cloud.json"))
    clouds = """clouds:
  testcloud:
    auth:
      auth_url: {auth_url}
      username: {username}
      password: {password}
      project_name: {project_name}
      user_domain_name: Default
      project_domain_name: Default
    region_name: {region}
    interface: public
    identity_api_version: 3
""".format(**info)
    with open(path("clouds.yaml"), "w") as f:
        f.write(clouds)


def cmd_start():
    t0 = time.time()
    with locked():
        write_configs()
        digest = config_digest()
        marker = path("setup-done")
        done = os.path.exists(marker)
        running = path("run", "config-digest")
        same = os.path.exists(running) and open(running).read().strip() == digest
        if done and same and all(running_pid(n) for n in NAMES):
            write_info()
            log("already running")
            return 0
        if not same:
            # Services that run run an older configuration.
            stop_services()
        setup_backing()
        ks = Keystone()
        if not done:
            log("first start: creating databases and the catalog (the cold start)")
            parallel(sync_nova, lambda: (sync_keystone(), spawn("keystone"), wait_ready(["keystone"], 60),
                                         catalog(ks)), sync_others)
        spawn("keystone")
        wait_ready(["keystone"], 60)
        ks.login()
        first = [n for n in NAMES if n not in ("keystone", "nova-api", "nova-compute")]
        for n in first:
            spawn(n)
        wait_ready(["placement", "glance", "cinder-api", "heat-api", "nova-conductor", "nova-scheduler",
                    "cinder-scheduler", "cinder-volume", "heat-engine"], 120)
        wait_ready(["neutron"], 120, token_fn=lambda: ks.token)
        spawn("nova-api")
        spawn("nova-compute")
        wait_ready(["nova-api", "nova-compute"], 120)
        deadline = time.time() + 90
        while not compute_up(ks):
            if time.time() > deadline:
                raise RuntimeError("nova-compute did not register within 90s; see " + path("log", "nova-compute.log"))
            time.sleep(1)
        seed(ks)
        with open(marker, "w") as f:
            f.write(SETUP_VERSION + "\n")
        with open(running, "w") as f:
            f.write(digest + "\n")
        write_info()
    log("up in %.1fs (%s)" % (time.time() - t0, "warm" if done else "cold"))
    return 0


def cmd_stop():
    t0 = time.time()
    with locked():
        stop_services()
    log("stopped in %.1fs" % (time.time() - t0))
    return 0


def cmd_stop_service(names):
    """Stops single services (a test stops nova-api mid-run)."""
    with locked():
        stop_services(names)
    return 0


def cmd_start_service(names):
    with locked():
        for n in names:
            spawn(n)
        ks = Keystone()
        wait_ready(names, 120, token_fn=lambda: ks.login() and ks.token)
    return 0


def cmd_status():
    bad = 0
    ks = Keystone()
    for n in NAMES:
        pid = running_pid(n)
        ok = pid and ready(n, (ks.login() and ks.token) if n == "neutron" else None)
        bad += not ok
        rss = ""
        if pid:
            with contextlib.suppress(OSError):
                with open("/proc/%d/status" % pid) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            rss = line.split()[1] + " kB"
        print("%-17s %-8s %s %s" % (n, "up" if ok else ("started" if pid else "down"), pid or "", rss))
    return 1 if bad else 0


def cmd_reset():
    with locked():
        stop_services()
        stmts = ["DROP DATABASE IF EXISTS %s%s;" % (DB_PREFIX, db) for db in DATABASES]
        sql("\n".join(stmts))
        rabbitmqctl("delete_vhost", VHOST, ok_codes=(0, 70))
        with contextlib.suppress(OSError):
            os.unlink(path("setup-done"))
        subprocess.run(["rm", "-rf", path("lib"), path("etc"), path("run"), path("lock")])
    log("reset")
    return 0


def cmd_env():
    i = cloud_info()
    print("export OS_AUTH_URL=%s OS_USERNAME=%s OS_PASSWORD=%s OS_PROJECT_NAME=%s "
          "OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default OS_REGION_NAME=%s "
          "OS_IDENTITY_API_VERSION=3" % (i["auth_url"], i["username"], i["password"], i["project_name"], i["region"]))
    return 0


def main(args):
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, rest = args[0], args[1:]
    try:
        if cmd == "start":
            return cmd_start()
        if cmd == "stop":
            return cmd_stop()
        if cmd == "status":
            return cmd_status()
        if cmd == "reset":
            return cmd_reset()
        if cmd == "env":
            return cmd_env()
        if cmd == "stop-service":
            return cmd_stop_service(rest)
        if cmd == "start-service":
            return cmd_start_service(rest)
    except RuntimeError as e:
        log("error: %s" % e)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
