#!/usr/bin/python3
"""database.event: libpq connection keywords, TLS to PostgreSQL, passfile
and service file.

One cluster for the whole file, listening on 127.0.0.1 with ssl=on and a
server certificate from a test CA made here with the openssl CLI.  Over
TCP it only admits role mg_tls, over TLS (hostssl) and with its password
(scram-sha-256); everything else over TCP is rejected.  The harness itself
talks to the cluster as postgres over the unix socket.
"""

import os
import re
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (GpgHome, Mailgend, PgCluster, SmtpSink, TempDir,  # noqa: E402
                     make_config, make_directive, run_cbmail, run_tests, write_config)
import mailcheck as mc  # noqa: E402

ROLE = "mg_tls"
PASSWORD = "pw-Zq8-not-in-any-log"
TEMPLATE = "tls.txt"
TEMPLATE_TEXT = "Report ${ticket_number}\n\nTicket ${ticket_number}\n${events_as_csv}\n"

HBA = """\
local   all  all                 trust
hostssl all  %s  127.0.0.1/32    scram-sha-256
host    all  all  127.0.0.1/32   reject
host    all  all  ::1/128        reject
""" % ROLE


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), r.stderr))


def make_ca(d, name):
    """A self-signed CA (P-256) in d: name.key, name.crt."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".crt", "-days", "3",
            "-subj", "/CN=Mailgen test CA %s" % name, cwd=d)


def make_server_cert(d, ca):
    """A certificate for localhost / 127.0.0.1 signed by ca: server.key, server.crt."""
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", "server.crt", "-days", "3", "-extfile", "san.ext", cwd=d)


class DbConnectTest(unittest.TestCase):
    pg = gpg = smtp = tdir = None

    @classmethod
    def setUpClass(cls):
        cls.tdir = TempDir("mgtls")
        d = cls.tdir.path
        make_ca(d, "ca")
        make_ca(d, "otherca")
        make_server_cert(d, "ca")

        def read(name):
            with open(os.path.join(d, name), "rb") as f:
                return f.read()

        cls.ca = os.path.join(d, "ca.crt")
        cls.other_ca = os.path.join(d, "otherca.crt")
        cls.pg = PgCluster(start=False, listen="127.0.0.1", hba=HBA,
                           files={"server.crt": read("server.crt"),
                                  "server.key": read("server.key")},
                           conf={"ssl": "on", "log_connections": "on",
                                 "ssl_cert_file": "{base}/server.crt",
                                 "ssl_key_file": "{base}/server.key"})
        cls.pg.start()
        cls.pg.psql("postgres", "CREATE ROLE %s LOGIN PASSWORD '%s';" % (ROLE, PASSWORD))
        cls.gpg = GpgHome()
        cls.smtp = SmtpSink()
        cls.template_dir = os.path.join(d, "templates")
        os.mkdir(cls.template_dir)
        with open(os.path.join(cls.template_dir, TEMPLATE), "w") as f:
            f.write(TEMPLATE_TEXT)
        cls.passfile = os.path.join(d, "pgpass")
        with open(cls.passfile, "w") as f:
            f.write("localhost:%d:*:%s:%s\n" % (cls.pg.port, ROLE, PASSWORD))
        os.chmod(cls.passfile, 0o600)

    @classmethod
    def tearDownClass(cls):
        for obj in (cls.smtp, cls.gpg, cls.pg, cls.tdir):
            if obj is not None:
                obj.cleanup()

    def setUp(self):
        self.smtp.clear()
        self.db = self.pg.create_db("c_" + self._testMethodName[5:40].lower())
        self.addCleanup(self.pg.drop_db, self.db)
        self.pg.psql(self.db, "GRANT eventdb_send_notifications TO %s;" % ROLE)

    # ---------------------------------------------------------------- helpers

    def event_cfg(self, **over):
        """database.event for mg_tls over TLS, password from the passfile."""
        ev = {"name": self.db, "username": ROLE, "host": "localhost",
              "hostaddr": "127.0.0.1", "port": self.pg.port, "sslmode": "verify-full",
              "sslrootcert": self.ca, "passfile": self.passfile, "connect_timeout": 10,
              "application_name": "mailgen-tls-test", "target_session_attrs": "read-write",
              "gssencmode": "disable", "options": "-c statement_timeout=60s"}
        ev.update(over)
        return {k: v for k, v in ev.items() if v is not None}

    def config(self, event, **kw):
        cfg = make_config(pg=self.pg, db=self.db, gpg=self.gpg, smtp=self.smtp,
                          template_dir=self.template_dir, sender="cert@example.org", **kw)
        cfg["database"]["event"] = event
        return cfg

    def insert(self, rcpt):
        return self.pg.insert_event(self.db, [make_directive(rcpt, TEMPLATE)])

    def cbmail(self, cfg, env=None):
        rc, out, err = run_cbmail(["--all"], cfg, env=env)
        self.last = "\nexit status %s\n--- stdout\n%s--- stderr\n%s" % (rc, out, err)
        self.assertNotIn(PASSWORD, out + err, "the password was logged")
        return rc, out, err

    def tls_logins(self, app):
        """Server log lines of authorised TLS logins of mg_tls with application_name app."""
        with open(self.pg.logfile, errors="replace") as f:
            return [ln for ln in f if "connection authorized: user=%s database=%s "
                    % (ROLE, self.db) in ln
                    and "application_name=%s" % app in ln and "SSL enabled" in ln]

    def assert_sent(self, rcpt):
        self.assertEqual([r for env in self.smtp.envelopes() for r in env["rcpt_tos"]], [rcpt])
        self.assertEqual(int(self.pg.scalar(self.db, "SELECT count(*) FROM directives"
                                                     " WHERE sent_id IS NULL")), 0)

    # ------------------------------------------------------------------ tests

    def test_verify_full_with_passfile(self):
        self.insert("tls@example.net")
        before = len(self.tls_logins("mailgen-tls-test"))
        rc, out, err = self.cbmail(self.config(self.event_cfg()))
        self.assertEqual(rc, 0, self.last)
        self.assertEqual(mc.summary(out), (False, 1, 0, 0), self.last)
        self.assert_sent("tls@example.net")
        # over TLS, as mg_tls, with the operator's application_name
        self.assertGreater(len(self.tls_logins("mailgen-tls-test")), before,
                           self.pg.log_tail())

    def test_port_as_string_and_password_key(self):
        # the original's keys keep working next to the new ones
        self.insert("orig@example.net")
        ev = self.event_cfg(passfile=None, port=str(self.pg.port), password=PASSWORD,
                            application_name=None)
        rc, out, err = self.cbmail(self.config(ev))
        self.assertEqual(rc, 0, self.last)
        self.assert_sent("orig@example.net")
        self.assertTrue(self.tls_logins("intelmqcbmail"), self.pg.log_tail())

    def test_pgpassfile_environment(self):
        self.insert("env@example.net")
        rc, out, err = self.cbmail(self.config(self.event_cfg(passfile=None)),
                                   env={"PGPASSFILE": self.passfile})
        self.assertEqual(rc, 0, self.last)
        self.assert_sent("env@example.net")

    def test_no_password_is_refused(self):
        # proves that the server really asks for the password
        self.insert("nopw@example.net")
        rc, out, err = self.cbmail(self.config(self.event_cfg(passfile="/nonexistent")))
        self.assertEqual(rc, 75, self.last)
        lines = mc.error_lines(err)
        self.assertEqual(len(lines), 1, self.last)
        self.assertIn("cannot connect to database '%s'" % self.db, lines[0])
        self.assertIn("password", lines[0])
        self.assertEqual(self.smtp.count(), 0)

    def test_untrusted_ca_fails(self):
        self.insert("ca@example.net")
        rc, out, err = self.cbmail(self.config(self.event_cfg(sslrootcert=self.other_ca)))
        self.assertEqual(rc, 75, self.last)
        lines = mc.error_lines(err)
        self.assertEqual(len(lines), 1, self.last)
        self.assertIn("cannot connect to database '%s'" % self.db, lines[0])
        self.assertIn("certificate verify failed", lines[0])
        self.assertEqual(self.smtp.count(), 0)
        self.assertEqual(self.tls_logins("mailgen-tls-test"), [])

    def test_wrong_host_name_fails(self):
        # verify-full checks the name: 127.0.0.2 is not in the certificate
        self.insert("name@example.net")
        rc, out, err = self.cbmail(self.config(self.event_cfg(host="127.0.0.2")))
        self.assertEqual(rc, 75, self.last)
        self.assertEqual(len(mc.error_lines(err)), 1, self.last)
        self.assertRegex(err, r"does not match host name|server certificate")
        self.assertEqual(self.smtp.count(), 0)

    def test_service_file(self):
        svc = os.path.join(self.tdir.path, "pg_service_%s.conf" % self.db)
        with open(svc, "w") as f:
            f.write("[mailgen]\nhost=localhost\nhostaddr=127.0.0.1\nport=%d\ndbname=%s\n"
                    "user=%s\nsslmode=verify-full\nsslrootcert=%s\npassfile=%s\n"
                    "application_name=mailgen-service\n"
                    % (self.pg.port, self.db, ROLE, self.ca, self.passfile))
        self.insert("svc@example.net")
        # only the service: name may be left out then
        rc, out, err = self.cbmail(self.config({"service": "mailgen"}),
                                   env={"PGSERVICEFILE": svc})
        self.assertEqual(rc, 0, self.last)
        self.assert_sent("svc@example.net")
        self.assertTrue(self.tls_logins("mailgen-service"), self.pg.log_tail())
        # an unknown service is a clear connection error
        rc, out, err = self.cbmail(self.config({"service": "nosuch"}),
                                   env={"PGSERVICEFILE": svc})
        self.assertEqual(rc, 75, self.last)
        self.assertIn("database of service 'nosuch'", err)
        self.assertIn("nosuch", mc.error_lines(err)[0])

    def test_bad_keywords_stop_the_start(self):
        self.insert("kw@example.net")
        tmp = TempDir("mgcfg")
        self.addCleanup(tmp.cleanup)
        cases = [
            ({"sslmod": "require"},
             r"'database\.event\.sslmod': not a libpq connection keyword"),
            ({"replication": "database"}, r"'database\.event\.replication': not a libpq"),
            ({"sslmode": True}, r"'database\.event\.sslmode': expected a string or an integer"),
            ({"dbname": "x"}, r"'database\.event\.dbname': write the database name as"),
            ({"name": None}, r"'database\.event\.name': missing, required"),
        ]
        for over, want in cases:
            with self.subTest(over=over):
                path = write_config(self.config(self.event_cfg(**over)), tmp.path)
                rc, out, err = self.cbmail(path)
                self.assertEqual(rc, 78, self.last)
                self.assertRegex(err, "^intelmqcbmail: ERROR: " + re.escape(path) + ": " + want)
                self.assertEqual(len(err.strip().splitlines()), 1, self.last)
        self.assertEqual(self.smtp.count(), 0)

    def test_mailgend_over_tls_and_reload(self):
        tmp = TempDir("mgcfg")
        self.addCleanup(tmp.cleanup)
        cfg = self.config(self.event_cfg(application_name=None),
                          daemon={"debounce_quiet_ms": 100, "debounce_max_ms": 500,
                                  "workers": 1})
        path = write_config(cfg, tmp.path)
        d = Mailgend(path)
        self.addCleanup(d.cleanup)
        d.wait_ready(timeout=30)
        self.insert("d1@example.net")
        self.smtp.wait_for(1, timeout=30)
        # both the LISTEN connection and the worker came in over TLS as mg_tls
        self.assertTrue(self.tls_logins("mailgend-listen"), self.pg.log_tail())
        # a reload with an unknown keyword is refused, the old settings stay
        bad = self.config(self.event_cfg(sslmode_typo="x"), daemon=cfg["daemon"])
        write_config(bad, tmp.path)
        d.signal(signal.SIGHUP)
        d.wait_log(r"^mailgend: ERROR: reload failed, keeping the old configuration: .*"
                   + re.escape(path) + r": 'database\.event\.sslmode_typo': not a libpq")
        self.assertTrue(d.running)
        self.insert("d2@example.net")
        self.smtp.wait_for(2, timeout=30)
        self.assertNotIn(PASSWORD, d.log())
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    run_tests()
