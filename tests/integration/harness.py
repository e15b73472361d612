"""Integration test harness for mailgen-c.

Real servers, started per test (class) and removed afterwards:

    PgCluster   a throw-away PostgreSQL cluster (unix socket only)
    SmtpSink    an SMTP server (aiosmtpd) that stores every mail in a Maildir
    GpgHome     a GnuPG home with a fresh unprotected ed25519 signing key

    Mailgend    the daemon (mailgend) on a private control socket, with
                mailgenctl at hand

plus helpers to write a mailgen config and to run intelmqcbmail.

Every class is a context manager and also registers itself for cleanup at
interpreter exit, so a failing test still removes its cluster, sink and gpg
agent.  Only processes started here are stopped, by PID.  Every wait is a
condition wait with a timeout.

Environment:
    MG_SOURCE_DIR    source tree (default: computed from this file)
    MG_BUILD_DIR     build tree with intelmqcbmail, mailgend, mailgenctl
                     (default: $MG_SOURCE_DIR/build)
    MG_PG_BINDIR     PostgreSQL server binaries (default /usr/lib/postgresql/15/bin)
    MG_TEST_WRAPPER  command prefixed to intelmqcbmail and mailgend, e.g.
                     "valgrind -q --error-exitcode=99"
    MG_KEEP_TMP      if set, temporary directories are kept (for debugging)

Requires /usr/bin/python3 (aiosmtpd) and must run as root (the cluster is run
as the "postgres" system user via runuser).
"""

import atexit
import contextlib
import json
import os
import pwd
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MG_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("MG_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
PG_BINDIR = os.environ.get("MG_PG_BINDIR") or "/usr/lib/postgresql/15/bin"
PYTHON = "/usr/bin/python3"

NOTIFICATIONS_SQL = os.path.join(SOURCE_DIR, "sql", "notifications.sql")
EVENTS_SQL = os.path.join(SOURCE_DIR, "tests", "data", "sql", "events.sql")


class HarnessError(Exception):
    pass


class PsqlError(HarnessError):
    def __init__(self, cmd, rc, stdout, stderr):
        self.cmd, self.rc, self.stdout, self.stderr = cmd, rc, stdout, stderr
        super().__init__("psql failed (rc=%d): %s" % (rc, stderr.strip()))


# ------------------------------------------------------------------ utilities

def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Poll predicate() until it returns a true value; return that value.

    Raises TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def _keep_tmp():
    return bool(os.environ.get("MG_KEEP_TMP"))


def _short_tmpdir(prefix):
    # Short paths: unix socket paths are limited to 107 bytes.
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def _rmtree(path):
    if path and os.path.isdir(path) and not _keep_tmp():
        shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _clean_env(extra=None):
    """Environment without PG* variables that could redirect clients."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("LC_ALL", "C.UTF-8")
    if extra:
        env.update(extra)
    return env


_registry = []


def _register(obj):
    _registry.append(obj)


def _unregister(obj):
    with contextlib.suppress(ValueError):
        _registry.remove(obj)


@atexit.register
def _cleanup_all():
    while _registry:
        obj = _registry.pop()
        with contextlib.suppress(Exception):
            obj.cleanup()


def _sigterm(signum, frame):
    # SIGTERM (e.g. a test driver's time-out): clean up and leave at once.
    # (Raising SystemExit would be caught by unittest as a test error.)
    _cleanup_all()
    sys.stderr.write("harness: terminated by signal %d, cleaned up\n" % signum)
    os._exit(128 + signum)


if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _sigterm)


def sql_literal(value):
    """Quote a Python value as an SQL literal (standard_conforming_strings)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (dict, list)):
        value = json.dumps(value)
    s = str(value)
    if "\0" in s:
        raise ValueError("NUL byte in SQL literal")
    return "'" + s.replace("'", "''") + "'"


def sql_ident(name):
    return '"' + name.replace('"', '""') + '"'


# ----------------------------------------------------------------- PgCluster

def make_directive(recipient_address="abuse@as64496.example",
                   template_name="test-template.txt",
                   notification_format="shadowserver",
                   event_data_format="csv_test",
                   aggregate_identifier=None,
                   notification_interval=0,
                   medium="email",
                   **more):
    """A CERT-bund style directive (a dict for extra.certbund.source_directives).

    aggregate_identifier defaults to {"source.asn": 64496}.  Pass a keyword
    with the value `OMIT` to leave a key out entirely."""
    d = {
        "medium": medium,
        "recipient_address": recipient_address,
        "template_name": template_name,
        "notification_format": notification_format,
        "event_data_format": event_data_format,
        "aggregate_identifier": ({"source.asn": 64496} if aggregate_identifier is None
                                 else aggregate_identifier),
        "notification_interval": notification_interval,
    }
    d.update(more)
    return {k: v for k, v in d.items() if v is not OMIT}


class _Omit:
    def __repr__(self):
        return "OMIT"


OMIT = _Omit()

DEFAULT_EVENT_FIELDS = {
    "source.ip": "192.0.2.10",
    "source.asn": 64496,
    "source.port": 53,
    "source.geolocation.cc": "DE",
    "protocol.transport": "udp",
    "protocol.application": "dns",
    "classification.taxonomy": "vulnerable",
    "classification.type": "vulnerable-system",
    "classification.identifier": "open-dns",
    "feed.name": "Open-DNS",
    "time.source": "2026-11-26T05:00:00+00:00",
    "time.observation": "2026-11-26T06:00:00+00:00",
}


class PgCluster:
    """A temporary PostgreSQL cluster, reachable only via its own unix socket.

        with PgCluster() as pg:
            pg.create_db("mg")              # events.sql + notifications.sql
            eid = pg.insert_event("mg", [make_directive()])
            pg.psql("mg", "SELECT count(*) FROM directives")  -> "1\\n"

    Attributes: host (socket directory, use as libpq host), port, user
    ("postgres", superuser, trust auth), datadir, logfile, pid (postmaster).
    """

    def __init__(self, port=None, start=True, listen="", conf=None, hba=None, files=None):
        """listen: listen_addresses ('' = unix socket only); conf: extra
        postgresql.conf settings {name: value}, where "{base}" in a string
        value stands for the cluster's directory; hba: the text of
        pg_hba.conf (default: initdb's, trust); files: {name: bytes} written
        into the cluster's directory, owned by postgres with mode 0600
        (certificates and keys: ssl_cert_file="{base}/server.crt")."""
        self.port = port or random.randint(20000, 59999)
        self.listen = listen
        self.conf = dict(conf or {})
        self.hba = hba
        self.files = dict(files or {})
        self.user = "postgres"
        self.base = None
        self.host = None
        self.datadir = None
        self.logfile = None
        self.pid = None
        self._pw = pwd.getpwnam("postgres")
        if start:
            self.start()

    # -- lifecycle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def _as_postgres(self, argv, **kw):
        kw.setdefault("cwd", self.base)
        kw.setdefault("env", _clean_env())
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(["runuser", "-u", "postgres", "--"] + argv, **kw)

    def _init(self):
        self.base = _short_tmpdir("mgpg")
        _register(self)
        os.chmod(self.base, 0o755)
        os.chown(self.base, self._pw.pw_uid, self._pw.pw_gid)
        self.host = os.path.join(self.base, "sock")
        self.datadir = os.path.join(self.base, "data")
        self.logfile = os.path.join(self.base, "postgres.log")
        os.mkdir(self.host, 0o755)
        os.chown(self.host, self._pw.pw_uid, self._pw.pw_gid)
        r = self._as_postgres([os.path.join(PG_BINDIR, "initdb"), "--nosync", "-A", "trust",
                               "-U", "postgres", "-E", "UTF8", "--locale=C",
                               "-D", self.datadir])
        if r.returncode != 0:
            raise HarnessError("initdb failed: %s%s" % (r.stdout, r.stderr))
        for name, data in self.files.items():
            path = self.path(name)
            with open(path, "wb") as f:
                f.write(data)
            os.chmod(path, 0o600)
            os.chown(path, self._pw.pw_uid, self._pw.pw_gid)
        if self.conf:
            with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
                for k, v in self.conf.items():
                    if isinstance(v, str):
                        v = sql_literal(v.replace("{base}", self.base))
                    f.write("%s = %s\n" % (k, v))
        if self.hba is not None:
            with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
                f.write(self.hba)

    def path(self, name):
        """A path in the cluster's directory (for files=...)."""
        return os.path.join(self.base, name)

    def start(self, timeout=60):
        """Start the cluster (initialising it on first use)."""
        if self.base is None:
            self._init()
        if self.pid is not None and _pid_alive(self.pid):
            return
        # fsync=off: a crash of the server process (stop("immediate")) keeps
        # every committed transaction, only an OS crash would lose data.
        # (Not synchronous_commit=off: that could lose commits on stop().)
        opts = ("-k %s -c listen_addresses='%s' -c fsync=off -c full_page_writes=off -p %d"
                % (self.host, self.listen, self.port))
        r = self._as_postgres([os.path.join(PG_BINDIR, "pg_ctl"), "-D", self.datadir,
                               "-l", self.logfile, "-w", "-t", str(int(timeout)),
                               "-o", opts, "start"], timeout=timeout + 10)
        self.pid = self._read_pid()
        if r.returncode != 0:
            raise HarnessError("pg_ctl start failed: %s%s\n%s"
                               % (r.stdout, r.stderr, self.log_tail()))
        wait_until(lambda: self._ready(), timeout=timeout, what="postgres to accept connections")

    def _read_pid(self):
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def _ready(self):
        r = subprocess.run([os.path.join(PG_BINDIR, "pg_isready"), "-q", "-h", self.host,
                            "-p", str(self.port)], env=_clean_env())
        return r.returncode == 0

    def stop(self, mode="immediate", timeout=60):
        """Stop the postmaster (default: immediate, like a crash).  Data stays."""
        if self.datadir is None or self.pid is None:
            return
        pid = self.pid
        if _pid_alive(pid):
            self._as_postgres([os.path.join(PG_BINDIR, "pg_ctl"), "-D", self.datadir,
                               "-m", mode, "-w", "-t", str(int(timeout)), "stop"],
                              timeout=timeout + 10)
            try:
                wait_until(lambda: not _pid_alive(pid), timeout=timeout,
                           what="postmaster %d to exit" % pid)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                wait_until(lambda: not _pid_alive(pid), timeout=10,
                           what="postmaster %d to die" % pid)
        self.pid = None

    def restart(self, mode="fast"):
        """Stop and start again on the same port with the same data."""
        self.stop(mode=mode)
        self.start()

    def cleanup(self):
        """Stop the cluster and remove its directory (idempotent)."""
        try:
            self.stop()
        finally:
            _rmtree(self.base)
            _unregister(self)
            self.base = None
            self.datadir = None

    def log_tail(self, nbytes=4000):
        try:
            with open(self.logfile, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - nbytes))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- clients

    def conninfo(self, db, user="postgres"):
        """libpq connection string for this cluster."""
        return "host=%s port=%d dbname=%s user=%s" % (self.host, self.port, db, user)

    def psql_run(self, db, sql=None, user="postgres", file=None, variables=None, timeout=120):
        """Run psql; return CompletedProcess (returncode, stdout, stderr: str).

        sql is fed on stdin (statement by statement, ON_ERROR_STOP=1);
        alternatively file= runs a file with -f.  Output is unaligned,
        tuples only, no command tags; notices/warnings go to stderr."""
        cmd = [os.path.join(PG_BINDIR, "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
               "-h", self.host, "-p", str(self.port), "-U", user, "-d", db]
        for k, v in (variables or {}).items():
            cmd += ["-v", "%s=%s" % (k, v)]
        if file is not None:
            cmd += ["-f", file]
            inp = None
        else:
            cmd += ["-f", "-"]
            inp = sql
        return subprocess.run(cmd, input=inp, capture_output=True, text=True,
                              env=_clean_env(), timeout=timeout,
                              stdin=subprocess.DEVNULL if inp is None else None)

    def psql(self, db, sql, user="postgres", check=True, timeout=120):
        """Run SQL with psql and return stdout (raises PsqlError on failure)."""
        r = self.psql_run(db, sql, user=user, timeout=timeout)
        if check and r.returncode != 0:
            raise PsqlError("psql", r.returncode, r.stdout, r.stderr)
        return r.stdout

    def query(self, db, sql, user="postgres"):
        """Rows of a single query as lists of strings (fields split on '|')."""
        out = self.psql(db, sql, user=user)
        return [line.split("|") for line in out.splitlines() if line != ""]

    def scalar(self, db, sql, user="postgres"):
        return self.psql(db, sql, user=user).strip()

    def load_file(self, db, path, user="postgres", variables=None):
        """Run an SQL file; raise PsqlError on failure; return the result."""
        r = self.psql_run(db, file=path, user=user, variables=variables)
        if r.returncode != 0:
            raise PsqlError(path, r.returncode, r.stdout, r.stderr)
        return r

    def create_db(self, name, schema=True):
        """CREATE DATABASE name; with schema=True also load the test events
        table (tests/data/sql/events.sql) and sql/notifications.sql."""
        self.psql("postgres", "CREATE DATABASE %s;" % sql_ident(name))
        if schema:
            self.load_file(name, EVENTS_SQL)
            self.load_file(name, NOTIFICATIONS_SQL)
        return name

    def drop_db(self, name):
        self.psql("postgres", "DROP DATABASE IF EXISTS %s WITH (FORCE);" % sql_ident(name))

    def create_login_role(self, name, member_of=()):
        """Create (if missing) a LOGIN role (trust auth, no password) that is
        a member of the given roles."""
        sql = ("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s) "
               "THEN CREATE ROLE %s LOGIN; END IF; END$$;\n"
               % (sql_literal(name), sql_ident(name)))
        for r in member_of:
            sql += "GRANT %s TO %s;\n" % (sql_ident(r), sql_ident(name))
        self.psql("postgres", sql)
        return name

    # -- events

    @staticmethod
    def event_insert_sql(directives=None, fields=None, extra=None, returning=True):
        """SQL for one INSERT INTO events.

        directives: list put into extra.certbund.source_directives (None: no
        directives key; any JSON value is used as-is, for bad-input tests).
        fields: column -> value, merged over DEFAULT_EVENT_FIELDS (a value of
        OMIT drops the column).  extra: dict merged into "extra"."""
        cols = dict(DEFAULT_EVENT_FIELDS)
        cols.update(fields or {})
        ex = dict(extra or {})
        if directives is not None:
            cb = dict(ex.get("certbund") or {})
            cb["source_directives"] = directives
            ex["certbund"] = cb
        cols["extra"] = ex
        cols = {k: v for k, v in cols.items() if v is not OMIT}
        sql = "INSERT INTO events (%s) VALUES (%s)" % (
            ", ".join(sql_ident(c) for c in cols),
            ", ".join(sql_literal(v) for v in cols.values()))
        if returning:
            sql += " RETURNING id"
        return sql + ";\n"

    def insert_event(self, db, directives=None, fields=None, extra=None, user="postgres"):
        """Insert one event; return its id (as postgres) or None (other users:
        no RETURNING, which would need SELECT on events)."""
        returning = user == "postgres"
        out = self.psql(db, self.event_insert_sql(directives, fields, extra, returning),
                        user=user)
        return int(out.strip()) if returning else None

    def insert_event_run(self, db, directives=None, fields=None, extra=None, user="postgres"):
        """Like insert_event but return the CompletedProcess (to see warnings)."""
        return self.psql_run(db, self.event_insert_sql(directives, fields, extra,
                                                       user == "postgres"), user=user)

    def insert_events(self, db, events):
        """Insert many events in one psql run (one transaction).

        events: iterable of dicts with optional keys directives, fields, extra.
        Returns the list of ids."""
        sql = "BEGIN;\n" + "".join(
            self.event_insert_sql(e.get("directives"), e.get("fields"), e.get("extra"))
            for e in events) + "COMMIT;\n"
        return [int(x) for x in self.psql(db, sql).split()]


# ----------------------------------------------------------------- SmtpSink

SINK_SCRIPT = os.path.join(HERE, "smtp_sink.py")


class SmtpSink:
    """An SMTP server on 127.0.0.1 storing every accepted mail in a Maildir.

        with SmtpSink() as smtp:
            ... config smtp.host = smtp.host, smtp.port = smtp.port ...
            smtp.wait_for(2)
            for envelope, raw in smtp.messages(): ...

    Options (all optional; set_options() changes them while running):
        reject_rcpt   {"addr@example": [550, "5.1.1 no such user"], ...}
                      (addresses compared case-insensitively)
        reject_data   [451, "4.3.0 try again later"]  reply to the end of DATA
        refuse_all    [554, "5.7.1 go away"]  reply to every MAIL FROM
        data_delay    seconds to wait before answering the end of DATA

    messages() returns [(envelope, raw_bytes)], envelope being a dict with
    mail_from, rcpt_tos, file, size, peer, mail_options, rcpt_options.
    rejections() returns the logged rejections [{"stage", "address", "code", ...}].
    """

    def __init__(self, options=None, start=True, timeout=15, tls_mode="none", tls_cert=None,
                 tls_key=None, auth_user=None, auth_password=None):
        """tls_mode "starttls" or "smtps" with tls_cert/tls_key (PEM paths, see
        TestCA) makes the sink offer STARTTLS or speak implicit TLS;
        auth_user/auth_password make it offer AUTH and require it for MAIL."""
        self.dir = _short_tmpdir("mgsmtp")
        _register(self)
        self.maildir = os.path.join(self.dir, "Maildir")
        self.log = os.path.join(self.dir, "envelopes.jsonl")
        self.reject_log = os.path.join(self.dir, "rejections.jsonl")
        self.options_file = os.path.join(self.dir, "options.json")
        self.port_file = os.path.join(self.dir, "port")
        self.stderr_file = os.path.join(self.dir, "sink.log")
        self.auth_log = os.path.join(self.dir, "auth.jsonl")
        self.tls_mode, self.tls_cert, self.tls_key = tls_mode, tls_cert, tls_key
        self.auth_user = auth_user
        self.auth_password_file = None
        if auth_user is not None:
            self.auth_password_file = os.path.join(self.dir, "auth-password")
            with open(self.auth_password_file, "w") as f:
                f.write(auth_password)
        self.host = "127.0.0.1"
        self.port = None
        self.proc = None
        self.set_options(options or {})
        if start:
            self.start(timeout=timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def set_options(self, options):
        """Replace the options; the running sink picks them up at the next command."""
        self.options = dict(options)
        tmp = self.options_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.options, f)
        os.replace(tmp, self.options_file)

    def start(self, timeout=15):
        """Start the sink (again).  After stop(), it comes back on the same port."""
        if self.proc is not None and self.proc.poll() is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.port_file)
        cmd = [PYTHON, SINK_SCRIPT, "--host", self.host, "--port", str(self.port or 0),
               "--maildir", self.maildir, "--log", self.log, "--reject-log", self.reject_log,
               "--options", self.options_file, "--port-file", self.port_file,
               "--tls-mode", self.tls_mode, "--auth-log", self.auth_log]
        if self.tls_mode != "none":
            cmd += ["--tls-cert", self.tls_cert, "--tls-key", self.tls_key]
        if self.auth_user is not None:
            cmd += ["--auth-user", self.auth_user,
                    "--auth-password-file", self.auth_password_file]
        errf = open(self.stderr_file, "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errf,
                                         stderr=errf, env=_clean_env())
        finally:
            errf.close()

        def ready():
            if self.proc.poll() is not None:
                raise HarnessError("smtp_sink exited with %s: %s"
                                   % (self.proc.returncode, self._stderr_tail()))
            try:
                with open(self.port_file) as f:
                    return int(f.read().strip())
            except (OSError, ValueError):
                return None

        self.port = wait_until(ready, timeout=timeout, what="smtp_sink to listen")

    def _stderr_tail(self):
        try:
            with open(self.stderr_file, "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout=10):
        """Stop the sink process (messages stay; start() brings it back)."""
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=timeout)
        self.proc = None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self):
        try:
            self.stop()
        finally:
            _rmtree(self.dir)
            _unregister(self)

    @staticmethod
    def _read_jsonl(path):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        # Only complete lines: the sink may be writing the last one.
        return [json.loads(line) for line in data.split(b"\n")[:-1] if line.strip()]

    def envelopes(self):
        return self._read_jsonl(self.log)

    def messages(self):
        """[(envelope dict, raw message bytes)] in the order they were accepted."""
        out = []
        for env in self.envelopes():
            with open(os.path.join(self.maildir, "new", env["file"]), "rb") as f:
                out.append((env, f.read()))
        return out

    def count(self):
        return len(self.envelopes())

    def rejections(self):
        return self._read_jsonl(self.reject_log)

    def auth_attempts(self):
        """[{"login", "mechanism", "success", "tls", "time"}] (AUTH sinks only)."""
        return self._read_jsonl(self.auth_log)

    def wait_for(self, count, timeout=30):
        """Wait until at least `count` messages were accepted; return messages()."""
        wait_until(lambda: self.count() >= count, timeout=timeout,
                   what="%d message(s) at the SMTP sink (have %d)" % (count, self.count()))
        return self.messages()

    def clear(self):
        """Forget the messages received so far (files and log)."""
        for env in self.envelopes():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.maildir, "new", env["file"]))
        for p in (self.log, self.reject_log, self.auth_log):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)


# ------------------------------------------------------------------ TestCA

class TestCA:
    """A CA and server certificates made with the openssl CLI in a temp dir.

        ca = TestCA()
        cert, key = ca.server_cert("localhost")     # DNS:localhost
        ca.ca_file                                   # PEM to trust

    Each instance is a separate CA, so a second TestCA() is "untrusted"
    for certificates of the first."""

    def __init__(self, name="mailgen test CA"):
        self.tmp = TempDir("mgca")
        self.dir = self.tmp.path
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.ca_file = os.path.join(self.dir, "ca.pem")
        self._openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                       "-nodes", "-keyout", self.ca_key, "-out", self.ca_file, "-days", "2",
                       "-subj", "/CN=" + name,
                       "-addext", "basicConstraints=critical,CA:TRUE",
                       "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        self.n = 0

    def _openssl(self, args):
        r = subprocess.run(["openssl"] + args, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise HarnessError("openssl %s failed: %s" % (args[0], r.stderr))

    def server_cert(self, *dns_names):
        """(cert path, key path) for a server certificate with these DNS names."""
        self.n += 1
        key = os.path.join(self.dir, "server%d.key" % self.n)
        csr = os.path.join(self.dir, "server%d.csr" % self.n)
        cert = os.path.join(self.dir, "server%d.pem" % self.n)
        ext = os.path.join(self.dir, "server%d.ext" % self.n)
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\n"
                    % ",".join("DNS:" + n for n in dns_names))
        self._openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                       "-keyout", key, "-out", csr, "-subj", "/CN=" + dns_names[0]])
        self._openssl(["x509", "-req", "-in", csr, "-CA", self.ca_file, "-CAkey", self.ca_key,
                       "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext])
        return cert, key

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def cleanup(self):
        self.tmp.cleanup()


# ------------------------------------------------------------------ GpgHome

class GpgHome:
    """A GnuPG home directory with one unprotected signing key (algo as
    gpg --quick-gen-key takes it: ed25519 by default, rsa3072, nistp256...).

    Attributes: home, fingerprint, uid."""

    uid = "Mailgen Test <mailgen@example.org>"

    def __init__(self, generate=True, algo="ed25519"):
        self.home = _short_tmpdir("mggpg")
        _register(self)
        os.chmod(self.home, 0o700)
        self.fingerprint = None
        self.algo = algo
        if generate:
            self.generate_key()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def gpg(self, args, input=None, timeout=60):
        """Run gpg with this home; return CompletedProcess (bytes)."""
        return subprocess.run(["gpg", "--homedir", self.home, "--batch", "--no-tty"] + args,
                              input=input, capture_output=True, timeout=timeout,
                              env=_clean_env({"GNUPGHOME": self.home}))

    def generate_key(self, uid=None):
        uid = uid or self.uid
        r = self.gpg(["--pinentry-mode", "loopback", "--passphrase", "",
                      "--quick-gen-key", uid, self.algo, "sign", "never"])
        if r.returncode != 0:
            raise HarnessError("gpg key generation failed: %s" % r.stderr.decode("utf-8", "replace"))
        r = self.gpg(["--with-colons", "--list-secret-keys", uid])
        fprs = [line.split(":")[9] for line in r.stdout.decode().splitlines()
                if line.startswith("fpr:")]
        if not fprs:
            raise HarnessError("no fingerprint for new key: %r" % r.stdout)
        self.fingerprint = fprs[0]
        return self.fingerprint

    def verify(self, signed_bytes, sig_bytes):
        """Verify a detached signature; return (ok, gpg status + messages)."""
        with tempfile.TemporaryDirectory(prefix="mgver", dir="/tmp") as d:
            data = os.path.join(d, "data")
            sig = os.path.join(d, "data.asc")
            with open(data, "wb") as f:
                f.write(signed_bytes)
            with open(sig, "wb") as f:
                f.write(sig_bytes)
            r = self.gpg(["--status-fd", "1", "--verify", sig, data])
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        ok = r.returncode == 0 and "[GNUPG:] GOODSIG" in out and "[GNUPG:] VALIDSIG" in out
        return ok, out

    def cleanup(self):
        try:
            if self.home and os.path.isdir(self.home):
                subprocess.run(["gpgconf", "--homedir", self.home, "--kill", "all"],
                               capture_output=True, timeout=30,
                               env=_clean_env({"GNUPGHOME": self.home}))
        finally:
            _rmtree(self.home)
            _unregister(self)


# ----------------------------------------------------------- mailgen config

class TempDir:
    """A temporary directory removed on cleanup (also registered for atexit)."""

    def __init__(self, prefix="mgtmp"):
        self.path = _short_tmpdir(prefix)
        _register(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def cleanup(self):
        _rmtree(self.path)
        _unregister(self)


def _deep_merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = v
    return base


def make_config(pg=None, db=None, gpg=None, smtp=None, template_dir=None,
                sender="mailgen@example.org", always_sign=None, user="postgres",
                logging_level="DEBUG", **overrides):
    """A mailgen config dict for the given PgCluster / GpgHome / SmtpSink.

    always_sign defaults to True when gpg is given.  overrides are deep-merged
    (e.g. database={"additional_directive_where": "..."})."""
    cfg = {
        "database": {"event": {"name": db or "mailgen", "username": user, "password": "",
                               "host": pg.host if pg else "localhost",
                               "port": pg.port if pg else 5432}},
        "openpgp": {"gnupg_home": gpg.home if gpg else "/nonexistent",
                    "always_sign": bool(gpg) if always_sign is None else always_sign,
                    "signing_key": gpg.fingerprint if gpg else ""},
        "template_dir": template_dir or os.path.join(SOURCE_DIR, "conf", "templates"),
        "sender": sender,
        "smtp": {"host": smtp.host if smtp else "127.0.0.1",
                 "port": smtp.port if smtp else 25},
        "logging_level": logging_level,
    }
    return _deep_merge(cfg, overrides)


def write_config(cfg, directory=None, name="intelmq-mailgen.conf"):
    """Write a config dict as JSON; return the path.  Without directory a
    TempDir is created (and removed at exit)."""
    if directory is None:
        directory = TempDir("mgcfg").path
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    return path


def cbmail_path():
    path = os.path.join(BUILD_DIR, "intelmqcbmail")
    if not os.access(path, os.X_OK):
        raise HarnessError("%s not found or not executable (build first, or set MG_BUILD_DIR)"
                           % path)
    return path


def cbmail_command(args, config):
    wrapper = shlex.split(os.environ.get("MG_TEST_WRAPPER", ""))
    return wrapper + [cbmail_path(), "-c", config] + list(args)


def run_cbmail(args, config, env=None, timeout=300, input=None):
    """Run $MG_BUILD_DIR/intelmqcbmail -c CONFIG ARGS...; return (rc, stdout, stderr).

    config: a path or a config dict (written to a temp file).  HOME points to
    an empty directory so no ~/.intelmq config is read; env adds variables."""
    if isinstance(config, dict):
        config = write_config(config)
    home = TempDir("mghome")
    try:
        e = _clean_env({"HOME": home.path})
        e.update(env or {})
        r = subprocess.run(cbmail_command(args, config), input=input, capture_output=True,
                           text=True, env=e, timeout=timeout,
                           stdin=subprocess.DEVNULL if input is None else None)
        return r.returncode, r.stdout, r.stderr
    finally:
        home.cleanup()


# ------------------------------------------------------------------ mailgend

def _build_binary(name):
    path = os.path.join(BUILD_DIR, name)
    if not os.access(path, os.X_OK):
        raise HarnessError("%s not found or not executable (build first, or set MG_BUILD_DIR)"
                           % path)
    return path


class Mailgend:
    """The daemon, started in the foreground with its stderr in a log file.

        with Mailgend(make_config(..., daemon={"debounce_quiet_ms": 200})) as d:
            d.wait_ready()
            pg.insert_event(...)
            smtp.wait_for(1)
            d.status()["sent"]          -> 1
            d.ctl("flush")              -> (0, "mailgend: flush requested\n", "")
            d.stop()                    -> 0 (exit status after SIGTERM)

    config: a config dict (written to a file in the daemon's TempDir) or a
    path.  socket_path: the control socket, passed with -s (default: a path
    in the TempDir).  env: extra environment variables.  MG_TEST_WRAPPER is
    put in front of the command like for intelmqcbmail.  Only the daemon's
    own PID is ever signalled; cleanup() stops it (SIGTERM, then SIGKILL)
    and removes the TempDir.

    Attributes: pid, proc, socket, config_path, log_path, dir.
    """

    def __init__(self, config, socket_path=None, env=None, start=True, args=()):
        self.tmp = TempDir("mgd")
        _register(self)
        self.dir = self.tmp.path
        self.home = os.path.join(self.dir, "home")
        os.mkdir(self.home, 0o700)
        if isinstance(config, dict):
            config = write_config(config, self.dir, name="mailgend.conf")
        self.config_path = config
        self.socket = socket_path or os.path.join(self.dir, "ctl.sock")
        self.log_path = os.path.join(self.dir, "mailgend.log")
        self.env = _clean_env({"HOME": self.home})
        self.env.update(env or {})
        self.args = list(args)
        self.proc = None
        if start:
            self.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def command(self):
        wrapper = shlex.split(os.environ.get("MG_TEST_WRAPPER", ""))
        return wrapper + [_build_binary("mailgend"), "-c", self.config_path,
                          "-s", self.socket] + self.args

    def start(self):
        """Start the daemon (again, after stop(): the log is appended to)."""
        if self.running:
            return
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf, env=self.env)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def returncode(self):
        return None if self.proc is None else self.proc.poll()

    # -- log

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, nbytes=6000):
        return self.log()[-nbytes:]

    def _check_alive(self, what):
        if self.proc is not None and self.proc.poll() is not None:
            raise HarnessError("mailgend exited with %s while waiting for %s; log:\n%s"
                               % (self.proc.returncode, what, self.log_tail()))

    def wait_log(self, regex, timeout=30, count=1, alive=True):
        """Wait until the log has at least `count` matches of regex (re.M);
        return the list of match objects.  With alive=True a daemon that
        exits meanwhile raises HarnessError at once."""
        rx = re.compile(regex, re.M)

        def found():
            ms = list(rx.finditer(self.log()))
            if len(ms) >= count:
                return ms
            if alive:
                self._check_alive("log /%s/" % regex)
            return None
        try:
            return wait_until(found, timeout=timeout, interval=0.05,
                              what="mailgend log to match /%s/ %d time(s)" % (regex, count))
        except TimeoutError as e:
            raise TimeoutError("%s; log tail:\n%s" % (e, self.log_tail())) from None

    # -- mailgenctl

    def ctl(self, *args, timeout=30):
        """Run mailgenctl -s SOCKET ARGS...; return (rc, stdout, stderr)."""
        r = subprocess.run([_build_binary("mailgenctl"), "-s", self.socket] + list(args),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           env=self.env, timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def status(self):
        """The daemon's status (mailgenctl --json status) as a dict; raises
        HarnessError when mailgenctl fails."""
        rc, out, err = self.ctl("--json", "status")
        if rc != 0:
            raise HarnessError("mailgenctl status failed (rc=%d): %s" % (rc, err.strip()))
        resp = json.loads(out)
        if not resp.get("ok"):
            raise HarnessError("mailgenctl status: not ok: %r" % resp)
        return resp["status"]

    def try_status(self):
        """status(), or None when the daemon does not answer."""
        try:
            return self.status()
        except (HarnessError, ValueError, subprocess.TimeoutExpired):
            return None

    def wait_status(self, pred, timeout=30, what="status condition"):
        """Wait until pred(status dict) is true; return that status."""
        def check():
            st = self.try_status()
            if st is not None and pred(st):
                return st
            self._check_alive(what)
            return None
        try:
            return wait_until(check, timeout=timeout, interval=0.05, what=what)
        except TimeoutError as e:
            raise TimeoutError("%s; last status %r; log tail:\n%s"
                               % (e, self.try_status(), self.log_tail())) from None

    def wait_ready(self, timeout=30, scanned=True):
        """Wait until mailgenctl status answers and the log says the daemon is
        listening for notifications; with scanned=True also until its first
        scan (the catch-up scan after connecting) is done.  Returns the status."""
        self.wait_log(r"listening for notifications", timeout=timeout)
        return self.wait_status(lambda st: not scanned or (st.get("last_scan") or 0) > 0,
                                timeout=timeout, what="mailgend to be ready")

    # -- signals, stop

    def signal(self, sig):
        """Send sig to the daemon's PID (only if it still runs)."""
        if self.running:
            os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=60):
        """Wait for the daemon to exit; return its exit status."""
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout=60):
        """SIGTERM, wait up to timeout s; return the exit status (None if
        never started).  On time-out the daemon is killed and TimeoutError raised."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
                raise TimeoutError("mailgend did not exit within %.0fs after SIGTERM; log:\n%s"
                                   % (timeout, self.log_tail()))
        return self.proc.returncode

    def kill(self):
        """SIGKILL the daemon (a crash) and reap it."""
        if self.running:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def cleanup(self):
        try:
            if self.running:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=30)
        finally:
            if _keep_tmp() and self.proc is not None:
                sys.stderr.write("harness: mailgend log kept at %s\n" % self.log_path)
            self.tmp.cleanup()
            _unregister(self)


class ServersTestCase(unittest.TestCase):
    """A PostgreSQL cluster, an SMTP sink, a gpg home and a TempDir (pg,
    smtp, gpg, tdir) per test class, removed when the class is done (also
    when its set-up fails half-way); a fresh database (db, named DB_PREFIX
    and the test's name) and an empty sink per test."""

    DB_PREFIX = "t_"
    TMP_PREFIX = "mgtest"

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.addClassCleanup(cls.pg.cleanup)
        cls.smtp = SmtpSink()
        cls.addClassCleanup(cls.smtp.cleanup)
        cls.gpg = GpgHome()
        cls.addClassCleanup(cls.gpg.cleanup)
        cls.tdir = TempDir(cls.TMP_PREFIX)
        cls.addClassCleanup(cls.tdir.cleanup)

    def setUp(self):
        self.smtp.clear()
        self.db = self.pg.create_db(self.DB_PREFIX + self._testMethodName[5:40].lower())
        self.addCleanup(self.pg.drop_db, self.db)

    def insert(self, directive, fields=None, extra=None, age_minutes=0):
        """Insert an event with one directive, its inserted_at age_minutes
        in the past; return the event's id."""
        eid = self.pg.insert_event(self.db, [directive], fields=fields or {}, extra=extra)
        if age_minutes:
            self.pg.psql(self.db, "UPDATE directives SET inserted_at = now() - interval"
                                  " '%d minutes' WHERE events_id = %d" % (age_minutes, eid))
        return eid

    def mails(self):
        """(envelope recipients, Subject, text of the first part) of each
        mail at the sink, every signature checked."""
        import mailcheck as mc
        out = []
        for env, raw in self.smtp.messages():
            msg = mc.parse_mail(raw)
            ok, detail = self.gpg.verify(*mc.signed_parts(raw))
            self.assertTrue(ok, detail)
            part = msg.get_payload()[0]
            if part.is_multipart():
                part = part.get_payload()[0]
            out.append((env["rcpt_tos"], str(msg["Subject"]),
                        part.get_content().replace("\r\n", "\n")))
        return out


def run_tests():
    """unittest.main() wrapper for the test scripts (verbose, exits non-zero on failure)."""
    unittest.main(verbosity=2)
