#!/usr/bin/python3
"""Format rules (issue #4) in intelmqcbmail and mailgend, with the rule files
shipped in conf/formats/ and the templates of conf/templates/, against real
PostgreSQL, SMTP and gpg: which rule decides, when a postponed group becomes
due, the columns and titles of the CSV, the substitutions; a group no rule
matches goes into the failed state; broken rule files stop the start, and a
reload with a broken rule file keeps the old set.
"""
import datetime
import json
import os
import re
import shutil
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (SOURCE_DIR, Mailgend, ServersTestCase,  # noqa: E402
                     make_config, make_directive, run_cbmail, run_tests,
                     wait_until)
import mailcheck as mc  # noqa: E402

FORMATS = os.path.join(SOURCE_DIR, "conf", "formats")
TEMPLATES = os.path.join(SOURCE_DIR, "conf", "templates")


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")


class FormatRulesTest(ServersTestCase):
    DB_PREFIX = "r_"
    TMP_PREFIX = "mgrules"

    def config(self, rules_dir=FORMATS, key="format_rules_dir", **kw):
        cfg = make_config(pg=self.pg, db=self.db, gpg=self.gpg, smtp=self.smtp,
                          template_dir=TEMPLATES, sender="CERT <cert@example.org>", **kw)
        cfg[key] = rules_dir
        return cfg

    def rules_copy(self, name):
        """A copy of the shipped rule directory to change in a test."""
        d = os.path.join(self.tdir.path, name)
        shutil.copytree(FORMATS, d)
        return d

    def shadowserver(self, rcpt, observed_hours_ago):
        now = datetime.datetime.now(datetime.timezone.utc)
        return make_directive(rcpt, "shadowserver-csv.txt", notification_format="shadowserver",
                              event_data_format="csv_DNS-open-resolvers",
                              aggregate_identifier={
                                  "source.asn": 64496,
                                  "time.observation": iso(now - datetime.timedelta(
                                      hours=observed_hours_ago))})

    def test_shadowserver_rule_postpones_then_sends_its_table(self):
        # newest directive 1 minute old, observation 3 hours: held back by
        # the 15-minute rule until inserted_at + 15 min
        self.insert(self.shadowserver("ss@example.net", 3), {"source.ip": "192.0.2.7"},
                    age_minutes=1)
        rc, out, err = run_cbmail(["--all"], self.config())
        self.assertEqual((rc, mc.summary(out)), (0, (False, 0, 1, 0)), out + err)
        m = re.search(r"postponed by rule 10_shadowserver\.json: shadowserver until "
                      r"(\S+) \(newest directive age\)", err)
        self.assertIsNotNone(m, err)
        due = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ")
        inserted = datetime.datetime.strptime(self.pg.scalar(
            self.db, "SELECT to_char(max(inserted_at) AT TIME ZONE 'UTC' + interval"
                     " '15 minutes', 'YYYY-MM-DD\"T\"HH24:MI:SS') FROM directives"),
            "%Y-%m-%dT%H:%M:%S")
        self.assertLessEqual(abs((due - inserted).total_seconds()), 1, err)
        self.assertEqual(self.smtp.count(), 0)

        # 20 minutes old: sent with the csv_DNS-open-resolvers table and titles
        self.pg.psql(self.db, "UPDATE directives SET inserted_at = now() - interval '20 min'")
        rc, out, err = run_cbmail(["--all"], self.config())
        self.assertEqual((rc, mc.summary(out)), (0, (False, 1, 0, 0)), out + err)
        (rcpts, subject, body), = self.mails()
        self.assertEqual(rcpts, ["ss@example.net"])
        self.assertRegex(subject, r"^\[IntelMQ-Mailgen#\d{8}-\d{8}\] Shadowserver report"
                                  r" about AS 64496$")
        self.assertIn("You find the details below.", body)
        rows = [ln for ln in body.splitlines() if ln.startswith(('"asn"', '"64496"'))]
        self.assertEqual(rows[0], '"asn","ip","timestamp"')
        self.assertTrue(rows[1].startswith('"64496","192.0.2.7",'), rows)

    def test_observation_age_postpones(self):
        # directive old enough, observation 1 hour old: due at observation + 2 h
        self.insert(self.shadowserver("obs@example.net", 1), age_minutes=30)
        rc, out, err = run_cbmail(["--all"], self.config())
        self.assertEqual((rc, mc.summary(out)), (0, (False, 0, 1, 0)), out + err)
        self.assertRegex(err, r"postponed by rule 10_shadowserver\.json: shadowserver until"
                              r" \S+ \(observation age\)")

    def test_fallback_rule_and_no_matching_rule(self):
        self.insert(make_directive("fb@example.net", "example-template.txt",
                                   notification_format="other", event_data_format="x"),
                    {"source.ip": "192.0.2.9"})
        rc, out, err = run_cbmail(["--all"], self.config())
        self.assertEqual((rc, mc.summary(out)), (0, (False, 1, 0, 0)), out + err)
        (rcpts, subject, body), = self.mails()
        self.assertIn("192.0.2.9", body)

        # a rule set without a fallback: the group is failed, not retried
        d = self.rules_copy("nofallback")
        os.unlink(os.path.join(d, "99_fallback.json"))
        self.insert(make_directive("nomatch@example.net", "example-template.txt",
                                   notification_format="other2", event_data_format="x"))
        rc, out, err = run_cbmail(["--all"], self.config(rules_dir=d))
        self.assertEqual(rc, 1, out + err)
        self.assertIn("no format rule matches it", err)
        self.assertEqual(self.pg.scalar(self.db, "SELECT state FROM mailgen_failed_groups"),
                         "failed")
        rc, out, err = run_cbmail(["--all"], self.config(rules_dir=d))
        self.assertEqual((rc, mc.summary(out)), (0, (False, 0, 0, 0)), out + err)

    def test_copies_same_ticket_other_placement(self):
        # 01_constituency_copies.json: Government copies inline, Energy copies
        # attached; the fallback decides inline for event_data_format "x"
        gov = make_directive("gov@example.net", "example-template.txt",
                             notification_format="other", event_data_format="x",
                             aggregate_identifier={"source.asn": 64496,
                                                   "recipient_group": "Government"})
        energy = make_directive("energy@example.net", "example-template.txt",
                                notification_format="other", event_data_format="x",
                                aggregate_identifier={"source.asn": 64497,
                                                      "recipient_group": "Energy"})
        self.insert(gov, {"source.ip": "192.0.2.21"})
        self.insert(energy, {"source.ip": "192.0.2.22"})
        rc, out, err = run_cbmail(["--all"], self.config())
        self.assertEqual((rc, mc.summary(out)), (0, (False, 2, 0, 0)), out + err)
        sent, tickets = self.sent_by_ticket()
        # Government: the copy has the same placement: one message, two
        # envelope recipients, To unchanged
        (rcpts, to, mid, multipart), = sent[tickets["gov@example.net"]]
        self.assertEqual(rcpts, ("gov@example.net", "internal-gov@cert.example"))
        self.assertEqual(to, "gov@example.net")
        self.assertFalse(multipart)  # inline CSV: no attachment
        # Energy: the copy wants an attachment: a second message with the
        # same ticket and To, another Message-Id, sent first
        copy, main = sent[tickets["energy@example.net"]]
        self.assertEqual(copy[0], ("internal-energy@cert.example",))
        self.assertEqual(main[0], ("energy@example.net",))
        self.assertEqual((copy[1], main[1]), ("energy@example.net", "energy@example.net"))
        self.assertNotEqual(copy[2], main[2])
        self.assertEqual((copy[3], main[3]), (True, False))
        self.assertEqual(self.pg.scalar(self.db, "SELECT count(*) FROM sent"), "2")

        # a refused copy does not fail the recipient's mail
        self.smtp.clear()
        self.pg.psql(self.db, "DELETE FROM directives; DELETE FROM sent;")
        self.insert(gov, {"source.ip": "192.0.2.23"})
        self.smtp.set_options({"reject_rcpt": {"internal-gov@cert.example":
                                               [550, "5.1.1 no such user"]}})
        try:
            rc, out, err = run_cbmail(["--all"], self.config())
        finally:
            self.smtp.set_options({})
        self.assertEqual((rc, mc.summary(out)), (0, (False, 1, 0, 0)), out + err)
        self.assertRegex(err, r"WARNING: 1 copies with ticket \S+ refused: RCPT TO"
                              r" <internal-gov@cert.example> refused: 550")
        sent, tickets = self.sent_by_ticket()
        (rcpts, to, mid, multipart), = sent[tickets["gov@example.net"]]
        self.assertEqual(self.pg.scalar(self.db, "SELECT count(*) FROM mailgen_outbox"), "0")

    def sent_by_ticket(self):
        sent = {}
        for env, raw in self.smtp.messages():
            msg = mc.parse_mail(raw)
            ticket = re.search(r"\d{8}-\d{8}", str(msg["Subject"])).group(0)
            inner = msg.get_payload()[0]
            sent.setdefault(ticket, []).append((tuple(env["rcpt_tos"]), str(msg["To"]),
                                                str(msg["Message-Id"]), inner.is_multipart()))
        tickets = dict(self.pg.query(self.db, "SELECT d.recipient_address, s.intelmq_ticket"
                                              " FROM directives d JOIN sent s"
                                              " ON s.id = d.sent_id"))
        return sent, tickets

    def test_broken_rules_stop_the_start(self):
        d = self.rules_copy("broken")
        with open(os.path.join(d, "20_demo.json"), "w") as f:
            f.write('{"rules": [{"name": "x", "postpone": {"min_directive_age": "soon"}}]}')
        rc, out, err = run_cbmail(["--all"], self.config(rules_dir=d))
        self.assertEqual(rc, 78, out + err)
        self.assertIn("20_demo.json: 'rules[0].postpone.min_directive_age'", err)
        # a rule naming a template that is not there
        d2 = self.rules_copy("missing-template")
        with open(os.path.join(d2, "20_demo.json"), "w") as f:
            json.dump({"rules": [{"name": "m", "template": "nope.txt"}]}, f)
        rc, out, err = run_cbmail(["--all"], self.config(rules_dir=d2))
        self.assertEqual(rc, 78, out + err)
        self.assertIn("template 'nope.txt': cannot read", err)

    def test_script_directory_alias_and_python_scripts(self):
        # the original's key works as an alias ...
        self.insert(make_directive("alias@example.net", "example-template.txt",
                                   notification_format="other", event_data_format="x"))
        rc, out, err = run_cbmail(["--all"], self.config(key="script_directory"))
        self.assertEqual((rc, mc.summary(out)), (0, (False, 1, 0, 0)), out + err)
        # ... but a directory with the original's Python scripts only is refused
        d = os.path.join(self.tdir.path, "pyonly")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "10shadowservercsv.py"), "w") as f:
            f.write("def create_notifications(context):\n    return None\n")
        rc, out, err = run_cbmail(["--all"], self.config(rules_dir=d, key="script_directory"))
        self.assertEqual(rc, 78, out + err)
        self.assertIn("'script_directory': no format rule files (NN_name.json)", err)
        self.assertIn("does not run the original's Python scripts", err)

    def test_daemon_mails_a_postponed_group_at_its_due_time(self):
        # a rule holding groups back until the newest directive is 3 s old:
        # the daemon's due timer (not a rescan: once an hour here) sends it
        d = os.path.join(self.tdir.path, "age3")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "10_age.json"), "w") as f:
            json.dump({"rules": [{"name": "age", "postpone": {"min_directive_age": 3}}]}, f)
        cfg = self.config(rules_dir=d, daemon={"debounce_quiet_ms": 100,
                                               "debounce_max_ms": 1000, "workers": 1,
                                               "rescan_interval_seconds": 3600,
                                               "control_socket": "/nonexistent/x.sock"})
        with Mailgend(cfg) as mgd:
            mgd.wait_ready()
            self.insert(make_directive("later@example.net", "example-template.txt",
                                       notification_format="other", event_data_format="x"))
            (env, _), = self.smtp.wait_for(1, timeout=30)
            inserted = float(self.pg.scalar(self.db, "SELECT extract(epoch FROM inserted_at)"
                                                     " FROM directives"))
            self.assertGreaterEqual(env["time"], inserted + 3 - 0.05)
            self.assertIn("scan requested: a postponed group is due", mgd.log())
            self.assertEqual(mgd.stop(), 0)

    def test_daemon_reload_with_broken_rules_keeps_the_old_set(self):
        d = self.rules_copy("reload")
        cfg = self.config(rules_dir=d, daemon={"debounce_quiet_ms": 100,
                                               "debounce_max_ms": 1000, "workers": 1,
                                               "control_socket": "/nonexistent/x.sock"})
        with Mailgend(cfg) as mgd:
            mgd.wait_ready()
            with open(os.path.join(d, "15_broken.json"), "w") as f:
                f.write('{"rules": [{"name": "b", "match": {"nope": 1}}]}')
            mgd.signal(signal.SIGHUP)
            mgd.wait_log(r"15_broken\.json: 'rules\[0\]\.match\.nope'")
            # still running with the old set: a fallback group is mailed
            self.insert(make_directive("reload@example.net", "example-template.txt",
                                       notification_format="other", event_data_format="x"))
            self.smtp.wait_for(1, timeout=30)
            wait_until(lambda: self.pg.scalar(
                self.db, "SELECT count(*) FROM directives WHERE sent_id IS NULL") == "0",
                timeout=30, what="the directive recorded")
            self.assertEqual(mgd.stop(), 0)


if __name__ == "__main__":
    run_tests()
