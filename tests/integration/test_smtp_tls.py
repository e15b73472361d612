#!/usr/bin/python3
"""SMTP transport security: STARTTLS (opportunistic and required), implicit
TLS (SMTPS), certificate and host name verification, and AUTH with a
password from a file or a systemd credential, against aiosmtpd sinks with a
CA and certificates made for this run (harness.TestCA).

A TLS or AUTH failure is a session failure: nothing is delivered, every
group stays pending, and the error says in one line what failed.  The
password never appears in any output.
"""

import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (Mailgend, PgCluster, SmtpSink, TempDir, TestCA,  # noqa: E402
                     make_config, make_directive, run_cbmail, run_tests)

TEMPLATE = ("Report ${ticket_number} for AS${source.asn}\n"
            "\n"
            "Ticket ${ticket_number}\n"
            "${events_as_csv}\n")
USER = "mailer"
PASSWORD = "Pw-7f3c9e-not-in-any-log"

PG = CA = CA2 = TPL = None
SINKS = {}


def setUpModule():
    global PG, CA, CA2, TPL
    PG = PgCluster()
    CA = TestCA()
    CA2 = TestCA("another CA")
    TPL = TempDir("mgtpl")
    with open(os.path.join(TPL.path, "report.txt"), "w") as f:
        f.write(TEMPLATE)
    good = CA.server_cert("localhost")
    wrong = CA.server_cert("wrong.example")
    untrusted = CA2.server_cert("localhost")
    specs = {
        "plain": {},
        "starttls": dict(tls_mode="starttls", tls_cert=good[0], tls_key=good[1]),
        "starttls_auth": dict(tls_mode="starttls", tls_cert=good[0], tls_key=good[1],
                              auth_user=USER, auth_password=PASSWORD),
        "smtps": dict(tls_mode="smtps", tls_cert=good[0], tls_key=good[1]),
        "smtps_auth": dict(tls_mode="smtps", tls_cert=good[0], tls_key=good[1],
                           auth_user=USER, auth_password=PASSWORD),
        "wrong_name": dict(tls_mode="starttls", tls_cert=wrong[0], tls_key=wrong[1]),
        "untrusted": dict(tls_mode="starttls", tls_cert=untrusted[0], tls_key=untrusted[1]),
        "smtps_wrong_name": dict(tls_mode="smtps", tls_cert=wrong[0], tls_key=wrong[1]),
    }
    for name, kw in specs.items():
        SINKS[name] = SmtpSink(**kw)


def tearDownModule():
    for s in SINKS.values():
        s.cleanup()
    for obj in (TPL, CA2, CA, PG):
        if obj is not None:
            obj.cleanup()


class TlsTestBase(unittest.TestCase):
    def setUp(self):
        self.db = PG.create_db("t_" + self._testMethodName[5:40].lower())
        self.addCleanup(PG.drop_db, self.db)
        for s in SINKS.values():
            s.clear()
        self.tmp = TempDir("mgtls")
        self.addCleanup(self.tmp.cleanup)
        self.pwfile = os.path.join(self.tmp.path, "smtp-password")
        with open(self.pwfile, "w") as f:
            f.write(PASSWORD + "\n")
        os.chmod(self.pwfile, 0o600)

    def config(self, sink, smtp=None, **kw):
        s = {"host": "localhost", "port": sink.port, "tls_ca_file": CA.ca_file}
        s.update(smtp or {})
        kw.setdefault("template_dir", TPL.path)
        cfg = make_config(pg=PG, db=self.db, sender="cert@example.org", always_sign=False,
                          **kw)
        cfg["smtp"] = s
        return cfg

    def insert(self, n, tag="r"):
        rcpts = ["%s-%d@example.net" % (tag, i) for i in range(n)]
        PG.insert_events(self.db, [{"directives": [make_directive(r, "report.txt")],
                                    "fields": {"source.ip": "192.0.2.%d" % (i + 1)}}
                                   for i, r in enumerate(rcpts)])
        return rcpts

    def pending(self):
        return int(PG.scalar(self.db, "SELECT count(*) FROM directives WHERE sent_id IS NULL"))

    def sent_rows(self):
        return int(PG.scalar(self.db, "SELECT count(*) FROM sent"))

    def cbmail(self, cfg, env=None):
        rc, out, err = run_cbmail(["--all"], cfg, env=env)
        self.assertNotIn(PASSWORD, out + err)
        return rc, out, err

    def assert_delivered(self, sink, rcpts, tls=True, auth_user=None):
        msgs = sink.wait_for(len(rcpts), timeout=30)
        self.assertEqual(sorted(e["rcpt_tos"][0] for e, _ in msgs), sorted(rcpts))
        for env, _ in msgs:
            self.assertEqual(env["tls"], tls, env)
            self.assertEqual(env["auth_user"], auth_user, env)
        self.assertEqual(self.pending(), 0)
        self.assertEqual(self.sent_rows(), len(rcpts))

    def assert_session_failed(self, rc, err, sink, pattern, n_pending):
        self.assertNotEqual(rc, 0, err)
        self.assertEqual(sink.count(), 0)
        self.assertEqual(self.pending(), n_pending)
        self.assertEqual(self.sent_rows(), 0)
        lines = [ln for ln in err.splitlines() if re.search(pattern, ln)]
        self.assertTrue(lines, "no line matching %r in:\n%s" % (pattern, err))


class StartTlsTest(TlsTestBase):
    def test_required_with_test_ca_delivers_several_mails_in_two_sessions(self):
        # mails_per_session 2: three mails need two STARTTLS sessions in one
        # process (libESMTP's crash trap 2)
        rcpts = self.insert(3)
        rc, out, err = self.cbmail(self.config(SINKS["starttls"], {"tls": "starttls-required"},
                                               delivery={"mails_per_session": 2}))
        self.assertEqual(rc, 0, err)
        self.assert_delivered(SINKS["starttls"], rcpts)

    def test_wrong_host_name_fails_verification(self):
        self.insert(1)
        rc, out, err = self.cbmail(self.config(SINKS["wrong_name"], {"tls": "starttls-required"}))
        self.assert_session_failed(rc, err, SINKS["wrong_name"],
                                   r"SMTP server 'localhost:\d+': certificate verification "
                                   r"failed: [Hh]ostname mismatch", 1)

    def test_server_name_option_checks_that_name(self):
        rcpts = self.insert(1)
        rc, out, err = self.cbmail(self.config(SINKS["wrong_name"],
                                               {"tls": "starttls-required",
                                                "tls_server_name": "wrong.example"}))
        self.assertEqual(rc, 0, err)
        self.assert_delivered(SINKS["wrong_name"], rcpts)

    def test_untrusted_ca_fails_verification(self):
        self.insert(1)
        rc, out, err = self.cbmail(self.config(SINKS["untrusted"], {"tls": "starttls"}))
        self.assert_session_failed(rc, err, SINKS["untrusted"],
                                   r"certificate verification failed: unable to get local "
                                   r"issuer certificate", 1)

    def test_untrusted_ca_without_verification_delivers_and_warns(self):
        rcpts = self.insert(1)
        rc, out, err = self.cbmail(self.config(SINKS["untrusted"],
                                               {"tls": "starttls-required",
                                                "tls_verify": False}))
        self.assertEqual(rc, 0, err)
        self.assertRegex(err, r"WARNING: .*'smtp.tls_verify' is false")
        self.assert_delivered(SINKS["untrusted"], rcpts)

    def test_required_but_not_offered_fails(self):
        self.insert(1)
        rc, out, err = self.cbmail(self.config(SINKS["plain"], {"tls": "starttls-required"}))
        self.assert_session_failed(rc, err, SINKS["plain"],
                                   r"does not offer STARTTLS", 1)

    def test_opportunistic_against_plain_server_delivers_in_plain(self):
        rcpts = self.insert(2)
        rc, out, err = self.cbmail(self.config(SINKS["plain"], {"tls": "starttls"}))
        self.assertEqual(rc, 0, err)
        self.assert_delivered(SINKS["plain"], rcpts, tls=False)

    def test_opportunistic_with_bad_certificate_still_fails(self):
        self.insert(1)
        rc, out, err = self.cbmail(self.config(SINKS["wrong_name"], {"tls": "starttls"}))
        self.assert_session_failed(rc, err, SINKS["wrong_name"],
                                   r"certificate verification failed", 1)


class SmtpsTest(TlsTestBase):
    def test_smtps_delivers_in_two_sessions(self):
        rcpts = self.insert(3)
        rc, out, err = self.cbmail(self.config(SINKS["smtps"], {"tls": "smtps"},
                                               delivery={"mails_per_session": 2}))
        self.assertEqual(rc, 0, err)
        self.assert_delivered(SINKS["smtps"], rcpts)

    def test_smtps_wrong_host_name_fails(self):
        self.insert(1)
        rc, out, err = self.cbmail(self.config(SINKS["smtps_wrong_name"], {"tls": "smtps"}))
        self.assert_session_failed(rc, err, SINKS["smtps_wrong_name"],
                                   r"SMTP server 'localhost:\d+': certificate verification "
                                   r"failed: [Hh]ostname mismatch", 1)

    def test_smtps_against_plain_server_fails_handshake(self):
        self.insert(1)
        rc, out, err = self.cbmail(self.config(SINKS["plain"], {"tls": "smtps"}))
        self.assert_session_failed(rc, err, SINKS["plain"], r"TLS handshake failed", 1)

    def test_smtps_auth_with_password_file(self):
        rcpts = self.insert(2)
        rc, out, err = self.cbmail(self.config(SINKS["smtps_auth"],
                                               {"tls": "smtps", "username": USER,
                                                "password_file": self.pwfile}))
        self.assertEqual(rc, 0, err)
        self.assert_delivered(SINKS["smtps_auth"], rcpts, auth_user=USER)


class AuthTest(TlsTestBase):
    def auth_cfg(self, **smtp):
        s = {"tls": "starttls-required", "username": USER, "password_file": self.pwfile}
        s.update(smtp)
        return self.config(SINKS["starttls_auth"], s)

    def test_auth_with_password_file(self):
        rcpts = self.insert(2)
        rc, out, err = self.cbmail(self.auth_cfg())
        self.assertEqual(rc, 0, err)
        self.assert_delivered(SINKS["starttls_auth"], rcpts, auth_user=USER)
        att = SINKS["starttls_auth"].auth_attempts()
        self.assertTrue(att and all(a["success"] and a["tls"] for a in att), att)

    def test_auth_with_systemd_credential(self):
        rcpts = self.insert(1)
        creds = os.path.join(self.tmp.path, "creds")
        os.mkdir(creds, 0o700)
        with open(os.path.join(creds, "smtp-pw"), "w") as f:
            f.write(PASSWORD)
        cfg = self.auth_cfg(password_file=None, password_credential="smtp-pw")
        del cfg["smtp"]["password_file"]
        rc, out, err = self.cbmail(cfg, env={"CREDENTIALS_DIRECTORY": creds})
        self.assertEqual(rc, 0, err)
        self.assert_delivered(SINKS["starttls_auth"], rcpts, auth_user=USER)

    def test_credential_without_credentials_directory_is_a_config_error(self):
        self.insert(1)
        cfg = self.auth_cfg(password_credential="smtp-pw")
        del cfg["smtp"]["password_file"]
        rc, out, err = self.cbmail(cfg)
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, r"'smtp.password_credential': \$CREDENTIALS_DIRECTORY is not set")
        self.assertEqual(SINKS["starttls_auth"].auth_attempts(), [])

    def test_wrong_password_fails_and_is_never_logged(self):
        self.insert(2)
        with open(self.pwfile, "w") as f:
            f.write("Wrong-" + PASSWORD)
        rc, out, err = self.cbmail(self.auth_cfg())
        self.assert_session_failed(rc, err, SINKS["starttls_auth"],
                                   r"SMTP server 'localhost:\d+': AUTH refused for user "
                                   r"'mailer': 535", 2)
        self.assertNotIn("Wrong-", out + err)
        att = SINKS["starttls_auth"].auth_attempts()
        self.assertTrue(att and not any(a["success"] for a in att), att)

    def test_auth_refused_without_tls(self):
        # opportunistic STARTTLS against a server without it: no AUTH in clear
        self.insert(1)
        rc, out, err = self.cbmail(self.config(SINKS["plain"],
                                               {"tls": "starttls", "username": USER,
                                                "password_file": self.pwfile}))
        self.assert_session_failed(rc, err, SINKS["plain"], r"AUTH|not encrypted", 1)

    def test_auth_over_plain_config_needs_explicit_consent(self):
        rc, out, err = self.cbmail(self.config(SINKS["plain"],
                                               {"tls": "off", "username": USER,
                                                "password_file": self.pwfile}))
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, r"'smtp.username': AUTH would send the password unencrypted")

    def test_missing_password_file_names_file_and_key(self):
        cfg = self.auth_cfg(password_file=os.path.join(self.tmp.path, "nope"))
        rc, out, err = self.cbmail(cfg)
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, r"\.conf: 'smtp.password_file': cannot open '.*/nope'")


class DaemonTlsTest(TlsTestBase):
    def daemon(self, cfg):
        d = Mailgend(cfg)
        self.addCleanup(d.cleanup)
        d.wait_ready(timeout=30)
        return d

    def dcfg(self, sink, smtp):
        return self.config(sink, smtp, delivery={"mails_per_session": 2},
                           daemon={"workers": 2, "debounce_quiet_ms": 100,
                                   "debounce_max_ms": 500, "retry_min_seconds": 1,
                                   "retry_max_seconds": 2, "rescan_interval_seconds": 3600,
                                   "control_socket": "/nonexistent/use-the-s-option.sock"})

    def test_daemon_two_workers_starttls_auth_many_sessions(self):
        d = self.daemon(self.dcfg(SINKS["starttls_auth"],
                                  {"tls": "starttls-required", "username": USER,
                                   "password_file": self.pwfile}))
        rcpts = self.insert(5, "a")
        SINKS["starttls_auth"].wait_for(5, timeout=30)
        rcpts += self.insert(4, "b")  # more sessions in the same worker threads
        sink = SINKS["starttls_auth"]
        sink.wait_for(9, timeout=30)
        d.wait_status(lambda s: s["sent"] == 9, what="sent == 9")
        self.assert_delivered(sink, rcpts, auth_user=USER)
        self.assertEqual(d.stop(), 0)
        self.assertNotIn(PASSWORD, d.log())

    def test_daemon_smtps(self):
        d = self.daemon(self.dcfg(SINKS["smtps"], {"tls": "smtps"}))
        rcpts = self.insert(5)
        SINKS["smtps"].wait_for(5, timeout=30)
        d.wait_status(lambda s: s["sent"] == 5, what="sent == 5")
        self.assert_delivered(SINKS["smtps"], rcpts)
        self.assertEqual(d.stop(), 0)

    def test_daemon_verification_failure_backs_off_and_keeps_groups(self):
        d = self.daemon(self.dcfg(SINKS["wrong_name"], {"tls": "starttls-required"}))
        self.insert(2)
        d.wait_log(r"certificate verification failed: [Hh]ostname mismatch", timeout=20)
        st = d.wait_status(lambda s: s["state"] == "smtp-unavailable",
                           what="state smtp-unavailable")
        self.assertEqual(st["sent"], 0)
        self.assertEqual(self.pending(), 2)
        self.assertEqual(SINKS["wrong_name"].count(), 0)
        self.assertEqual(d.stop(), 0)

    def test_daemon_refuses_to_start_without_password(self):
        cfg = self.dcfg(SINKS["starttls_auth"],
                        {"tls": "starttls-required", "username": USER,
                         "password_file": os.path.join(self.tmp.path, "nope")})
        d = Mailgend(cfg)
        self.addCleanup(d.cleanup)
        rc = d.wait_exit(timeout=30)
        self.assertNotEqual(rc, 0)
        self.assertRegex(d.log(), r"'smtp.password_file': cannot open")


if __name__ == "__main__":
    run_tests()
