#!/usr/bin/python3
"""Format rules (issue #4), checking and seeing: the shipped malware-infection
and demo rules against real directives in PostgreSQL (the decision, or the
exact mail: columns, titles, placement, substitutions); `intelmqcbmail
--preview` (the mail as it will be sent, byte for byte apart from ticket,
Date, Message-Id, MIME boundary and signature, with nothing changed in the
database); `intelmqcbmail --explain` in each state of a directive; and
`mailgend --check-config` on broken rule files.
"""
import datetime
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (BUILD_DIR, SOURCE_DIR, ServersTestCase,  # noqa: E402
                     make_config, make_directive, run_cbmail, run_tests,
                     write_config)
import mailcheck as mc  # noqa: E402

FORMATS = os.path.join(SOURCE_DIR, "conf", "formats")
TEMPLATES = os.path.join(SOURCE_DIR, "conf", "templates")
MALWARE_SPECIAL_TITLES = ["ASN", "IP", "Time", "Identifier", "Malware", "Port",
                          "Destination-IP", "Destination-Port", "Destination-FQDN"]
MALWARE_TITLES = ["asn", "ip", "timestamp", "malware", "src_port", "dst_ip", "dst_port",
                  "dst_host", "proto"]
TICKET_RE = rb"\d{8}-\d{8}"


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def utc(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)


def explained(out):
    """The "key: value" lines of --explain as a dict."""
    d = {}
    for line in out.splitlines():
        k, sep, v = line.partition(": ")
        if sep:
            d[k] = v
    return d


def normalize(raw):
    """A mail with what differs between two builds of it replaced: ticket,
    Date, Message-Id, the MIME boundary and the signature."""
    raw = re.sub(rb"(?im)^Date: .*$", b"Date: X", raw)
    raw = re.sub(rb"(?im)^Message-Id: .*$", b"Message-Id: X", raw)
    raw = re.sub(TICKET_RE, b"TICKET", raw)
    for b in set(re.findall(rb'boundary="([^"]+)"', raw)):
        raw = raw.replace(b, b"BOUNDARY")
    raw = re.sub(rb"-----BEGIN PGP SIGNATURE-----.*?-----END PGP SIGNATURE-----",
                 b"SIGNATURE", raw, flags=re.S)
    return raw


class FormatPreviewTest(ServersTestCase):
    DB_PREFIX = "p_"
    TMP_PREFIX = "mgprev"

    # -- helpers

    def config(self, rules_dir=FORMATS, **kw):
        cfg = make_config(pg=self.pg, db=self.db, gpg=self.gpg, smtp=self.smtp,
                          template_dir=TEMPLATES, sender="CERT <cert@example.org>", **kw)
        if rules_dir is not None:
            cfg["format_rules_dir"] = rules_dir
        return cfg

    def rules_copy(self, name):
        d = os.path.join(self.tdir.path, self._testMethodName + "-" + name)
        shutil.copytree(FORMATS, d)
        return d

    def insert(self, directive, fields=None, age_minutes=0):
        """Insert an event with one directive; return the directive's id."""
        eid = super().insert(directive, fields=fields, age_minutes=age_minutes)
        return int(self.pg.scalar(self.db, "SELECT id FROM directives WHERE events_id = %d"
                                           % eid))

    def explain(self, did, cfg=None):
        rc, out, err = run_cbmail(["--explain", str(did)], cfg or self.config())
        self.assertEqual(rc, 0, out + err)
        return explained(out)

    def preview(self, did, cfg=None):
        """(rc, raw mail bytes or None, stderr) of --preview --output FILE."""
        path = os.path.join(self.tdir.path, "preview-%s-%d.eml" % (self._testMethodName, did))
        if os.path.exists(path):
            os.unlink(path)
        rc, out, err = run_cbmail(["--preview", str(did), "--output", path],
                                  cfg or self.config())
        self.assertEqual(out, "", err)
        raw = None
        if os.path.exists(path):
            with open(path, "rb") as f:
                raw = f.read()
        return rc, raw, err

    def send_all(self, cfg=None, sent=1):
        rc, out, err = run_cbmail(["--all"], cfg or self.config())
        self.assertEqual((rc, mc.summary(out)[1]), (0, sent), out + err)
        return err

    def text_of(self, raw):
        """(subject, first text part, attachment bytes or None) of a signed mail."""
        ok, detail = self.gpg.verify(*mc.signed_parts(raw))
        self.assertTrue(ok, detail)
        msg = mc.parse_mail(raw)
        part = msg.get_payload()[0]
        attachment = None
        if part.is_multipart():
            attachment = part.get_payload()[1]
            self.assertEqual(attachment.get_filename(), "events.csv")
            attachment = attachment.get_payload(decode=True)
            part = part.get_payload()[0]
        return (str(msg["Subject"]), part.get_content().replace("\r\n", "\n"), attachment)

    def malware(self, rcpt, fmt, edf, observed_hours_ago=3, asn=64496, **kw):
        now = datetime.datetime.now(datetime.timezone.utc)
        return make_directive(rcpt, "malware-infection.txt", notification_format=fmt,
                              event_data_format=edf, aggregate_identifier={
                                  "source.asn": asn,
                                  "time.observation": iso(now - datetime.timedelta(
                                      hours=observed_hours_ago))}, **kw)

    # -- the shipped malware-infection rules

    def test_malware_special_matter_waits_then_inline_with_its_columns(self):
        did = self.insert(self.malware("av@example.net", "avalanche", "avalanche_csv_inline"),
                          {"source.ip": "192.0.2.66", "malware.name": "andromeda",
                           "classification.identifier": "avalanche"}, age_minutes=1)
        # held back by the directive age (15 min), not by the observation (3 h old)
        ex = self.explain(did)
        self.assertEqual(ex["rule"], "11_malware_infection.json: special-matters")
        self.assertEqual((ex["table"], ex["placement"]), ("malware-special", "inline"))
        self.assertEqual(ex["verdict"], "postponed")
        m = re.fullmatch(r"(\S+) \(postponed by newest directive age\)", ex["due"])
        self.assertIsNotNone(m, ex)
        inserted = utc(self.pg.scalar(self.db, "SELECT to_char(inserted_at AT TIME ZONE 'UTC',"
                                               " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                                               " FROM directives"))
        self.assertLessEqual(abs((utc(m.group(1)) - inserted).total_seconds() - 900), 1, ex)
        # the preview says so and shows the mail it will get
        rc, raw, err = self.preview(did)
        self.assertEqual(rc, 0, err)
        self.assertIn("decided by rule 11_malware_infection.json: special-matters", err)
        self.assertIn("postponed until %s (newest directive age)" % m.group(1), err)
        self.assertIsNotNone(raw)
        rc, out, err = run_cbmail(["--all"], self.config())
        self.assertEqual((rc, mc.summary(out)), (0, (False, 0, 1, 0)), out + err)
        self.assertEqual(self.smtp.count(), 0)

        # 20 minutes old: sent, the same mail as previewed
        self.pg.psql(self.db, "UPDATE directives SET inserted_at = now() - interval '20 min'")
        self.assertEqual(self.explain(did)["due"], "now")
        self.send_all()
        (env, sent), = self.smtp.messages()
        self.assertEqual(env["rcpt_tos"], ["av@example.net"])
        self.assertEqual(normalize(raw), normalize(sent))
        subject, body, attachment = self.text_of(sent)
        self.assertIsNone(attachment)
        self.assertRegex(subject, r"^\[IntelMQ-Mailgen#\d{8}-\d{8}\] Infected systems in"
                                  r" AS64496$")
        self.assertIn("You find the list of affected systems below.", body)
        self.assertIn("=" * 70 + "\n\nAffected hosts\n\n", body)
        self.assertIn("This is an automatically generated message.", body)
        self.assertIn("the developers of IntelMQ-Mailgen", body)
        rows = mc.csv_rows(body.split("Affected hosts\n", 1)[1].split("\nPlease note")[0])
        self.assertEqual(rows[0], MALWARE_SPECIAL_TITLES)
        self.assertEqual(rows[1][:5], ["64496", "192.0.2.66", "2026-11-26 05:00:00",
                                       "avalanche", "andromeda"])
        self.assertEqual(self.explain(did)["verdict"], "sent")

    def test_malware_special_matter_attachment_and_observation_age(self):
        # directive old, observation 1 h: held back until observation + 2 h
        did = self.insert(self.malware("eb@example.net", "ebury", "ebury_csv_attachment",
                                       observed_hours_ago=1),
                          {"source.ip": "192.0.2.67", "malware.name": "ebury"},
                          age_minutes=30)
        ex = self.explain(did)
        self.assertEqual(ex["placement"], "attachment")
        m = re.fullmatch(r"(\S+) \(postponed by observation age\)", ex["due"])
        self.assertIsNotNone(m, ex)
        obs = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
        self.assertLessEqual(abs((utc(m.group(1)) - obs).total_seconds() - 7200), 5, ex)

        # observed 3 h ago: due; sent as an attachment with the special columns
        self.pg.psql(self.db, "UPDATE directives SET aggregate_identifier ="
                              " ARRAY[ARRAY['source.asn','64496'],ARRAY['time.observation',"
                              " to_char(now() - interval '3 hours', 'YYYY-MM-DD HH24:MI:SS+00')]]")
        rc, raw, err = self.preview(did)
        self.assertEqual(rc, 0, err)
        self.assertIn("due now", err)
        self.send_all()
        (env, sent), = self.smtp.messages()
        self.assertEqual(normalize(raw), normalize(sent))
        subject, body, attachment = self.text_of(sent)
        self.assertIn("You find the list of affected systems attached.", body)
        self.assertNotIn("Affected hosts", body)
        rows = mc.csv_rows(attachment.decode())
        self.assertEqual(rows[0], MALWARE_SPECIAL_TITLES)
        self.assertEqual(rows[1][1], "192.0.2.67")
        self.assertEqual(rows[1][4], "ebury")

    def test_malware_infection_waits_for_the_interval(self):
        d = self.malware("mi@example.net", "malware-infection",
                         "malware-infection_csv_attachment", notification_interval=3600)
        did = self.insert(d, {"source.ip": "192.0.2.68", "destination.fqdn": "cc.example"})
        ex = self.explain(did)
        self.assertEqual(ex["rule"], "11_malware_infection.json: malware-infection")
        self.assertEqual((ex["table"], ex["placement"], ex["due"], ex["verdict"]),
                         ("malware-infection", "attachment", "now", "due"), ex)
        self.send_all()
        (env, sent), = self.smtp.messages()
        subject, body, attachment = self.text_of(sent)
        self.assertIn("affected systems attached.", body)
        rows = mc.csv_rows(attachment.decode())
        self.assertEqual(rows[0], MALWARE_TITLES)
        self.assertEqual(rows[1][1], "192.0.2.68")
        self.assertEqual(rows[1][7], "cc.example")

        # a new directive with the same keys: not before last mail + interval
        did2 = self.insert(d, {"source.ip": "192.0.2.69"})
        ex = self.explain(did2)
        m = re.fullmatch(r"(\S+) \(postponed by notification interval\)", ex["due"])
        self.assertIsNotNone(m, ex)
        sent_at = utc(self.pg.scalar(self.db, "SELECT to_char(sent_at AT TIME ZONE 'UTC',"
                                              " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM sent"))
        self.assertLessEqual(abs((utc(m.group(1)) - sent_at).total_seconds() - 3600), 1, ex)
        self.assertEqual(ex["verdict"], "postponed")
        self.assertIn("notification interval 3600 s", ex["last mail for these keys"])
        rc, out, err = run_cbmail(["--all"], self.config())
        self.assertEqual((rc, mc.summary(out)), (0, (False, 0, 1, 0)), out + err)

    def test_malware_formats_without_suffix_fall_through(self):
        # not _csv_inline / _csv_attachment: the malware rules leave it to the fallback
        did = self.insert(self.malware("fb@example.net", "avalanche", "avalanche_plain"))
        ex = self.explain(did)
        self.assertEqual(ex["rule"], "99_fallback.json: fallback")
        self.assertEqual(ex["table"], "fallback")

    # -- the shipped demo rule

    def test_demo_rule_attaches_and_preview_equals_the_mail_sent(self):
        did = self.insert(make_directive("demo@example.net", "example-template-attachment.txt",
                                         notification_format="demo",
                                         event_data_format="demo_csv"),
                          {"source.ip": "192.0.2.70"})
        self.insert(make_directive("demo@example.net", "example-template-attachment.txt",
                                   notification_format="demo", event_data_format="demo_csv"),
                    {"source.ip": "192.0.2.71"})
        before = mc.db_snapshot(self.pg, self.db)
        rc, raw, err = self.preview(did)
        self.assertEqual(rc, 0, err)
        self.assertIn("group of directive %d: 2 directives, 2 events" % did, err)
        self.assertIn("decided by rule 20_demo.json: demo", err)
        # nothing changed: no ticket drawn, no outbox or failed-group row
        self.assertEqual(mc.db_snapshot(self.pg, self.db), before)
        self.assertEqual(mc.tickets_drawn(self.pg, self.db), 0)
        self.assertEqual(self.pg.scalar(self.db, "SELECT count(*) FROM mailgen_outbox"), "0")
        self.assertEqual(self.pg.scalar(self.db, "SELECT count(*) FROM mailgen_failed_groups"),
                         "0")
        self.assertRegex(raw, rb"\[CERT Example #\d{8}-00000000\]")
        ok, detail = self.gpg.verify(*mc.signed_parts(raw))
        self.assertTrue(ok, detail)

        self.send_all()
        (env, sent), = self.smtp.messages()
        self.assertNotEqual(raw, sent)
        self.assertEqual(normalize(raw), normalize(sent))
        subject, body, attachment = self.text_of(sent)
        self.assertRegex(subject, r"^\[CERT Example #\d{8}-\d{8}\] Infected systems in"
                                  r" AS64496$")
        self.assertIn("listed in the attached file", body)
        rows = mc.csv_rows(attachment.decode())
        self.assertEqual(rows[0], mc.FALLBACK_TITLES)
        self.assertEqual(sorted(r[1] for r in rows[1:]), ["192.0.2.70", "192.0.2.71"])
        # sent now: no preview, explain says with which ticket
        rc, raw2, err = self.preview(did)
        self.assertEqual((rc, raw2), (1, None), err)
        self.assertIn("is not pending", err)
        ex = self.explain(did)
        ticket = self.pg.scalar(self.db, "SELECT intelmq_ticket FROM sent")
        self.assertRegex(ex["state"], r"^sent with ticket %s at \S+Z$" % ticket)
        self.assertEqual(ex["verdict"], "sent")

    # -- preview and explain in the other states

    def test_preview_without_rules_and_with_a_split_group(self):
        cfg = self.config(rules_dir=None, delivery={"max_events_per_mail": 2})
        ids = [self.insert(make_directive("split@example.net", "example-template.txt",
                                          notification_format="other", event_data_format="x"),
                           {"source.ip": "192.0.2.%d" % (80 + i)}) for i in range(3)]
        rc, raw, err = self.preview(ids[2], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("1 directives, 1 events, mail 2 of 2", err)
        self.assertIn("built-in interval rule", err)
        body = self.text_of(raw)[1]
        self.assertIn("192.0.2.82", body)
        self.assertNotIn("192.0.2.80", body)
        ex = self.explain(ids[0], cfg)
        self.assertTrue(ex["rule"].startswith("built-in"), ex)
        self.assertEqual(ex["group"], "3 pending directives, 3 events, in 2 mails"
                                      " (delivery.max_events_per_mail 2)")
        self.assertEqual(ex["verdict"], "due")

    def test_explain_no_rule_then_failed(self):
        d = self.rules_copy("nofallback")
        os.unlink(os.path.join(d, "99_fallback.json"))
        cfg = self.config(rules_dir=d)
        did = self.insert(make_directive("none@example.net", "example-template.txt",
                                         notification_format="other", event_data_format="x"))
        ex = self.explain(did, cfg)
        self.assertEqual((ex["state"], ex["verdict"]), ("pending", "no-rule"), ex)
        self.assertTrue(ex["rule"].startswith("none"), ex)
        rc, raw, err = self.preview(did, cfg)
        self.assertEqual((rc, raw), (1, None), err)
        self.assertIn("no format rule matches the group", err)
        run_cbmail(["--all"], cfg)
        ex = self.explain(did, cfg)
        self.assertEqual(ex["verdict"], "failed")
        fid = self.pg.scalar(self.db, "SELECT id FROM mailgen_failed_groups")
        self.assertRegex(ex["failed group"], r"^failed \(id %s, 1 attempts\), not retried until"
                                             r" 'mailgenctl retry %s': no format rule" % (fid, fid))

    def test_explain_deferred_outbox_dropped_excluded_and_limited(self):
        cfg = self.config()
        keys = "recipient_address, template_name, notification_format, event_data_format," \
               " aggregate_identifier"
        # deferred after a temporary failure: due at retry_at
        dfr = self.insert(make_directive("dfr@example.net", "example-template.txt",
                                         notification_format="other", event_data_format="x"))
        self.pg.psql(self.db, "INSERT INTO mailgen_failed_groups (%s, state, reason, retry_at,"
                              " directive_ids) SELECT %s, 'deferred', '451 try later',"
                              " now() + interval '1 hour', ARRAY[id] FROM directives"
                              " WHERE id = %d" % (keys, keys, dfr))
        ex = self.explain(dfr, cfg)
        self.assertEqual(ex["verdict"], "deferred", ex)
        self.assertRegex(ex["failed group"], r"^deferred \(id \d+, 1 attempts\), retried at"
                                             r" \S+Z: 451 try later$")
        self.assertRegex(ex["due"], r"\(postponed by retry after a temporary failure\)$")

        # a mail in the outbox: preview shows it as it is, explain says so
        obx = self.insert(make_directive("obx@example.net", "example-template.txt",
                                         notification_format="other", event_data_format="x"))
        stored = "Subject: stored\r\n\r\nbuilt before\r\n"
        self.pg.psql(self.db, "INSERT INTO mailgen_outbox (intelmq_ticket, message_id, %s,"
                              " directive_ids, envelope_from, envelope_to, message)"
                              " SELECT '20260101-00000042', '<x@example.org>', %s, ARRAY[id],"
                              " 'cert@example.org', ARRAY[recipient_address], '%s'"
                              " FROM directives WHERE id = %d"
                              % (keys, keys, stored.replace("\r\n", "' || E'\\r\\n' || '"), obx))
        ex = self.explain(obx, cfg)
        self.assertEqual(ex["verdict"], "outbox", ex)
        self.assertIn("mail 20260101-00000042 waits in mailgen_outbox", ex["outbox"])
        rc, raw, err = self.preview(obx, cfg)
        self.assertEqual((rc, raw), (0, stored.encode()), err)
        self.assertIn("ticket 20260101-00000042) waits in the outbox", err)
        self.assertEqual(self.pg.scalar(self.db, "SELECT attempts FROM mailgen_outbox"), "0")

        # dropped by an operator
        drp = self.insert(make_directive("drp@example.net", "example-template.txt",
                                         notification_format="other", event_data_format="x"))
        self.pg.psql(self.db, "INSERT INTO mailgen_dropped_directives (directive_id, reason)"
                              " VALUES (%d, 'dropped by test')" % drp)
        ex = self.explain(drp, cfg)
        self.assertEqual(ex["verdict"], "dropped")
        self.assertRegex(ex["state"], r"^dropped at \S+Z: dropped by test$")

        # not selected by database.additional_directive_where
        ex = self.explain(dfr, self.config(
            database={"additional_directive_where": "d3.template_name = 'nothing'"}))
        self.assertEqual(ex["verdict"], "excluded", ex)

        # the per-recipient limit
        lim = self.config(delivery={"recipient_max_mails": 1,
                                    "recipient_window_seconds": 3600})
        first = self.insert(make_directive("lim@example.net", "example-template.txt",
                                           notification_format="other", event_data_format="x"))
        self.assertEqual(self.explain(first, lim)["recipient limit"],
                         "0 of 1 mails in the last 3600 s")
        run_cbmail(["--all"], lim)
        second = self.insert(make_directive("lim@example.net", "example-template.txt",
                                            notification_format="other", event_data_format="y"))
        ex = self.explain(second, lim)
        self.assertEqual(ex["verdict"], "limited", ex)
        self.assertRegex(ex["recipient limit"], r"^reached \(1 mails in the last 3600 s,")

    def test_explain_and_preview_of_unknown_ids(self):
        rc, out, err = run_cbmail(["--explain", "4711"], self.config())
        self.assertEqual(rc, 1, out + err)
        self.assertIn("no directive with id 4711", err)
        rc, out, err = run_cbmail(["--explain", "x"], self.config())
        self.assertEqual(rc, 64, out + err)
        rc, out, err = run_cbmail(["--preview", "1", "--explain", "1"], self.config())
        self.assertEqual(rc, 64, out + err)

    # -- mailgend --check-config

    def check_config(self, cfg):
        path = write_config(cfg, self.tdir.path, name=self._testMethodName + ".conf")
        r = subprocess.run([os.path.join(BUILD_DIR, "mailgend"), "-c", path, "--check-config"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60, env={"HOME": self.tdir.path, "PATH": os.environ["PATH"]})
        return r.returncode, r.stdout, r.stderr

    def test_check_config_reports_rule_errors(self):
        rc, out, err = self.check_config(self.config())
        self.assertEqual((rc, out), (0, "mailgend: configuration OK\n"), err)
        d = self.rules_copy("broken")
        with open(os.path.join(d, "11_malware_infection.json"), "w") as f:
            json.dump({"rules": [{"name": "m", "table": "no-such-table"}]}, f)
        rc, out, err = self.check_config(self.config(rules_dir=d))
        self.assertEqual(rc, 78, out + err)
        self.assertIn("11_malware_infection.json: 'rules[0].table'", err)
        self.assertIn("no-such-table", err)
        with open(os.path.join(d, "11_malware_infection.json"), "w") as f:
            f.write('{"rules": [}')
        rc, out, err = self.check_config(self.config(rules_dir=d))
        self.assertEqual(rc, 78, out + err)
        self.assertRegex(err, r"11_malware_infection\.json:\d+:\d+: ")
        with open(os.path.join(d, "11_malware_infection.json"), "w") as f:
            json.dump({"rules": [{"name": "m", "template": "missing.txt"}]}, f)
        rc, out, err = self.check_config(self.config(rules_dir=d))
        self.assertEqual(rc, 78, out + err)
        self.assertIn("template 'missing.txt'", err)


if __name__ == "__main__":
    run_tests()
