#!/usr/bin/python3
"""Hostile or broken data in the database, for intelmqcbmail and mailgend.

Everything read from the database is untrusted, and a hostile or old
database can hold anything: the directives here are inserted straight into
the "directives" table, past the checks of the trigger in
sql/notifications.sql.  Each bad group must fail alone: one ERROR line
naming its directive_ids and event_ids, its directives still pending
(sent_id IS NULL), every other group of the same run delivered, and the
daemon still running.  (Whether a failed group is tried again later is not
checked here: groups failing with bad input get a failed state of their
own, see issue #5.)

test_cbmail_failures.py covers the same kinds of input for intelmqcbmail
when it comes in through the trigger, and the SMTP side.
"""

import csv
import io
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (GpgHome, Mailgend, PgCluster, SmtpSink, TempDir,  # noqa: E402
                     make_config, run_cbmail, run_tests, sql_ident, sql_literal,
                     EVENTS_SQL, NOTIFICATIONS_SQL)
import mailcheck as mc  # noqa: E402

EVIL = "evil@example.org"
GOOD = "good.txt"
TEMPLATES = {
    GOOD: "Report ${ticket_number} for AS${source.asn}\n\n"
          "Ticket ${ticket_number}\n${events_as_csv}\n",
    "brace.txt": "Report ${ticket_number}\n\nHello ${\n",
    "digit.txt": "Report $1 ${ticket_number}\n\nHello\n",
    "unclosed.txt": "Report ${ticket_number}\n\nHello ${source.asn\n",
    "badname.txt": "Report ${ticket_number}\n\nHello ${source asn}\n",
}
OUTSIDE = "Leaked ${ticket_number}\n\nThis template lies outside template_dir.\n"
ATTACH = "csv_test_csv_attachment"  # event_data_format asking for events.csv
CTRL = "a\r\nb\x01c\x1b[31m\"d\te\rf\x7f"


class Group:
    """One group: a directive (and its event) put straight into the tables."""

    def __init__(self, name, rcpt="{name}@example.net", template=GOOD, agg=None,
                 fields=None, extra=None, edf="csv_test", good=False):
        self.name = name
        self.rcpt = rcpt.format(name=name.replace("_", "-")) if isinstance(rcpt, str) else rcpt
        self.template = template
        self.agg = agg if agg is not None else [("source.asn", "64496")]
        self.fields = fields or {}
        self.extra = extra
        self.edf = edf
        self.good = good
        self.dids = self.eids = None


def lit(v):
    """An SQL literal; bytes become an escape string (for SQL_ASCII databases)."""
    if isinstance(v, bytes):
        return "E'" + "".join("\\x%02x" % c for c in v) + "'"
    return sql_literal(v)


class HostileTestBase(unittest.TestCase):
    pg = gpg = smtp = tdir = None
    encoding = "UTF8"

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.gpg = GpgHome()
        cls.smtp = SmtpSink()
        cls.tdir = TempDir("mghostile")
        cls.template_dir = os.path.join(cls.tdir.path, "templates")
        os.mkdir(cls.template_dir)
        os.mkdir(os.path.join(cls.template_dir, "sub"))
        for name, text in TEMPLATES.items():
            with open(os.path.join(cls.template_dir, name), "w") as f:
                f.write(text)
        # if a name with "/" were allowed, this template would be used
        with open(os.path.join(cls.template_dir, "sub", GOOD), "w") as f:
            f.write(OUTSIDE)
        cls.outside = os.path.join(cls.tdir.path, "outside.txt")
        with open(cls.outside, "w") as f:
            f.write(OUTSIDE)

    @classmethod
    def tearDownClass(cls):
        for obj in (cls.smtp, cls.gpg, cls.pg, cls.tdir):
            if obj is not None:
                obj.cleanup()

    def setUp(self):
        self.smtp.clear()
        self.db = "h_%s_%s" % (self.__class__.__name__[:10].lower(),
                               self._testMethodName[5:30].lower())
        if self.encoding == "UTF8":
            self.pg.create_db(self.db)
        else:
            self.pg.psql("postgres", "CREATE DATABASE %s ENCODING %s TEMPLATE template0"
                                     " LC_COLLATE 'C' LC_CTYPE 'C';"
                         % (sql_ident(self.db), sql_literal(self.encoding)))
            self.pg.load_file(self.db, EVENTS_SQL)
            self.pg.load_file(self.db, NOTIFICATIONS_SQL)
        self.addCleanup(self.pg.drop_db, self.db)

    # ---------------------------------------------------------------- helpers

    def config(self, **kw):
        return make_config(pg=self.pg, db=self.db, gpg=self.gpg, smtp=self.smtp,
                           template_dir=self.template_dir,
                           sender="CERT Example <cert@example.org>", **kw)

    def insert(self, groups):
        """Events through the events table (no directives in extra), then the
        directives straight into the directives table, in one transaction."""
        sql = "BEGIN;\n"
        for g in groups:
            cols = {"source.ip": "192.0.2.1", "source.asn": 64496,
                    "time.source": "2026-11-26T05:00:00+00:00"}
            cols.update(g.fields)
            if g.extra is not None:
                cols["extra"] = g.extra
            sql += "INSERT INTO events (%s) VALUES (%s) RETURNING id;\n" % (
                ", ".join(sql_ident(c) for c in cols), ", ".join(lit(v) for v in cols.values()))
        sql += "COMMIT;\n"
        eids = [int(x) for x in self.pg.psql(self.db, sql).split()]
        sql = "BEGIN;\n"
        for g, eid in zip(groups, eids):
            agg = "ARRAY[%s]::text[]" % ", ".join(
                "ARRAY[%s, %s]" % (lit(k), lit(v)) for k, v in g.agg)
            sql += ("INSERT INTO directives (events_id, medium, recipient_address,"
                    " template_name, notification_format, event_data_format,"
                    " aggregate_identifier, notification_interval, endpoint)"
                    " VALUES (%d, 'email', %s, %s, 'shadowserver', %s, %s, '0', 'source')"
                    " RETURNING id;\n" % (eid, lit(g.rcpt), lit(g.template), lit(g.edf), agg))
        sql += "COMMIT;\n"
        dids = [int(x) for x in self.pg.psql(self.db, sql).split()]
        for g, eid, did in zip(groups, eids, dids):
            g.eids, g.dids = frozenset([eid]), frozenset([did])

    def pending(self):
        return {int(r[0]) for r in self.pg.query(self.db, "SELECT id FROM directives"
                                                          " WHERE sent_id IS NULL")}

    def check(self, groups, log):
        """One ERROR line per bad group naming its ids, none else; bad groups
        pending, good ones sent; only good recipients at the sink; every mail
        well-formed, with no injected header."""
        bad = [g for g in groups if not g.good]
        good = [g for g in groups if g.good]
        lines = mc.error_lines(log)
        named = {}
        for line in lines:
            dids, eids = mc.ids_of(line)
            self.assertIsNotNone(dids, "ERROR line without directive_ids: %r" % line)
            self.assertIsNotNone(eids, "ERROR line without event_ids: %r" % line)
            named.setdefault(dids, []).append((eids, line))
        for g in bad:
            with self.subTest(bad=g.name):
                got = named.get(g.dids, [])
                self.assertEqual(len(got), 1, "want one ERROR line for %s %s\n%s"
                                 % (g.name, sorted(g.dids), log[-6000:]))
                self.assertEqual(got[0][0], g.eids)
                # a ticket drawn for a failed group goes to the next mail
                self.assertNotIn(" ticket=", got[0][1])
        self.assertEqual(len(lines), len(bad), "\n".join(lines))
        pending = self.pending()
        for g in bad:
            self.assertTrue(g.dids <= pending, "bad group %s not pending" % g.name)
        for g in good:
            self.assertFalse(g.dids & pending, "good group %s not sent\n%s"
                             % (g.name, log[-6000:]))
        self.assertEqual(int(self.pg.scalar(self.db, "SELECT count(*) FROM sent")), len(good))
        rcpts = sorted(r for env in self.smtp.envelopes() for r in env["rcpt_tos"])
        self.assertEqual(rcpts, sorted(g.rcpt for g in good))
        for env, raw in self.smtp.messages():
            self.assertEqual(mc.bare_lf(raw), [], "bare LF in the mail")
            self.assertNotRegex(raw, rb"\r(?!\n)", "bare CR in the mail")
            self.assertNotIn(EVIL.encode(), raw)
            self.assertNotIn(b"Leaked", raw)
            self.assertNotIn(b"root:", raw)
            msg = mc.parse_mail(raw)
            self.assertIsNone(msg["Bcc"])
            self.assertEqual(len(msg.get_all("To")), 1)
            self.assertEqual(len(msg.get_all("Subject")), 1)
            for name, value in msg.items():
                self.assertNotIn("\n", str(value), "header %s: %r" % (name, value))

    def run_cbmail(self, groups, **cfg):
        self.insert(groups)
        rc, out, err = run_cbmail(["--all"], self.config(**cfg))
        self.assertEqual(rc, 1 if any(not g.good for g in groups) else 0,
                         "exit %s\n%s%s" % (rc, out, err))
        self.assertNotIn("Traceback", err)
        self.check(groups, err)
        return err

    def run_daemon(self, groups, **cfg):
        cfg.setdefault("daemon", {})
        cfg["daemon"].update({"workers": 1, "debounce_quiet_ms": 100, "debounce_max_ms": 500,
                              "rescan_interval_seconds": 3600})
        d = Mailgend(self.config(**cfg))
        self.addCleanup(d.cleanup)
        d.wait_ready(timeout=30)
        self.insert(groups)
        n_good = sum(1 for g in groups if g.good)
        n_bad = len(groups) - n_good
        self.smtp.wait_for(n_good, timeout=60)
        if n_bad:
            d.wait_log(r"ERROR: .*directive_ids=", count=n_bad, timeout=60)
        d.wait_status(lambda st: st.get("state") == "idle", timeout=60,
                      what="mailgend idle after the run")
        self.assertTrue(d.running, d.log_tail())
        self.assertIs(d.status()["db_connected"], True)
        log = d.log()
        self.check(groups, log)
        self.assertEqual(d.stop(), 0)
        return log


# ---------------------------------------------------------------- the cases

def hostile_groups(outside):
    G = Group
    return [
        G("ok1", good=True),
        # recipient addresses
        G("rcpt_crlf", rcpt="victim@example.net\r\nBcc: %s" % EVIL),
        G("rcpt_lf", rcpt="victim@example.net\nBcc: %s" % EVIL),
        G("rcpt_cr", rcpt="victim@example.net\rBcc: %s" % EVIL),
        G("rcpt_space", rcpt="foo bar@example.net"),
        G("rcpt_lead_space", rcpt=" lead@example.net"),
        G("rcpt_two_at", rcpt="a@b@example.net"),
        G("rcpt_angle", rcpt="a@example.net>, <%s" % EVIL),
        # 85 x 3 bytes + 12: 267 bytes in 97 characters, fits VARCHAR(100)
        G("rcpt_long", rcpt="\u20ac" * 85 + "@example.net"),
        G("rcpt_non_ascii", rcpt="m\u00fcller@example.net"),
        G("rcpt_ctrl", rcpt="x\x1b@example.net"),
        # template names
        G("tmpl_slash", template="sub/" + GOOD),
        G("tmpl_dotdot", template=".."),
        G("tmpl_dotdot_path", template="../outside.txt"),
        G("tmpl_absolute", template=outside),
        G("tmpl_etc_passwd", template="/etc/passwd"),
        G("tmpl_unknown", template="does-not-exist.txt"),
        G("tmpl_ctrl", template="good.txt\r\nx"),
        # broken placeholders
        G("tmpl_brace", template="brace.txt"),
        G("tmpl_digit", template="digit.txt"),
        G("tmpl_unclosed", template="unclosed.txt"),
        G("tmpl_badname", template="badname.txt"),
        # header injection through the subject (${source.asn} is in it)
        G("subject_crlf", agg=[("source.asn", "64496\r\nBcc: %s" % EVIL)]),
        G("subject_lf", agg=[("source.asn", "64496\nBcc: %s" % EVIL)]),
        G("subject_ctrl", agg=[("source.asn", "64496\x1b[2J")]),
        # control characters in event fields are data: quoted in the CSV,
        # encoded by quoted-printable, the group is delivered
        G("field_ctrl", fields={"destination.fqdn": CTRL}, good=True),
        G("field_ctrl_attached", fields={"destination.fqdn": CTRL}, edf=ATTACH, good=True),
        # a 10 MB extra: not in the CSV columns, never loaded, delivered
        G("extra_10mb", extra={"blob": "x" * (10 << 20)}, good=True),
        # a field larger than delivery.max_mail_bytes (1 MiB here)
        G("field_2mb", fields={"destination.fqdn": "y" * (2 << 20)}),
        G("ok2", good=True),
    ]


def check_ctrl_mails(test):
    """The groups with control characters: CSV and MIME intact, the cell back."""
    want = CTRL.replace("\r\n", "\n")
    seen = 0
    for env, raw in test.smtp.messages():
        if env["rcpt_tos"][0] not in ("field-ctrl@example.net",
                                      "field-ctrl-attached@example.net"):
            continue
        msg = mc.parse_mail(raw)
        parts = [p for p in msg.walk() if p.get_content_type() in ("text/plain", "text/csv")]
        if env["rcpt_tos"][0] == "field-ctrl-attached@example.net":
            data = [p for p in parts if p.get_content_type() == "text/csv"][0]
            text = data.get_payload(decode=True).decode("utf-8")
        else:
            body = parts[0].get_payload(decode=True).decode("utf-8")
            # the CSV starts at the header row and ends before the blank line
            text = body[body.index('"asn"'):]
            text = text[:text.rindex("\r\n") + 2] if text.endswith("\r\n") else text
        rows = list(csv.reader(io.StringIO(text, newline="")))
        rows = [r for r in rows if r]
        test.assertEqual(len(rows), 2, "CSV rows: %r" % rows)
        test.assertEqual(rows[0], [t for _, t in mc.FALLBACK_COLUMNS])
        test.assertEqual(len(rows[1]), len(mc.FALLBACK_COLUMNS))
        test.assertEqual(rows[1][6].replace("\r\n", "\n"), want)
        seen += 1
    test.assertEqual(seen, 2)


class HostileCbmailTest(HostileTestBase):

    def test_hostile_directives(self):
        groups = hostile_groups(self.outside)
        self.run_cbmail(groups, delivery={"max_mail_bytes": 1 << 20})
        check_ctrl_mails(self)


class HostileDaemonTest(HostileTestBase):

    def test_hostile_directives(self):
        groups = hostile_groups(self.outside)
        self.run_daemon(groups, delivery={"max_mail_bytes": 1 << 20})
        check_ctrl_mails(self)


# Bytes that are not UTF-8.  A UTF8 database cannot store them.  A
# SQL_ASCII database stores anything, but the server checks what it sends
# to a client with client_encoding UTF8 (mailgen's): the statement fails
# with SQLSTATE 22021 "invalid byte sequence for encoding UTF8".  So such
# bytes never reach mailgen as text; what matters is which statement fails.

def not_utf8_event_groups():
    """Bad bytes in event fields: loading that group's events fails."""
    G = Group
    return [
        G("ok1", good=True),
        G("field_not_utf8", fields={"destination.fqdn": b"host\xff\xfe.example"}),
        G("field_cut_seq", fields={"protocol.transport": b"ud\xc3"}),
        G("field_overlong", fields={"feed.name": b"x", "destination.fqdn": b"a\xc0\xafb"}),
        # valid UTF-8 in a SQL_ASCII database goes through
        G("field_utf8", fields={"destination.fqdn": "m\u00fcller.example".encode()},
          good=True),
        G("ok2", good=True),
    ]


class NotUtf8CbmailTest(HostileTestBase):
    encoding = "SQL_ASCII"

    def test_sql_ascii_event_fields(self):
        err = self.run_cbmail(not_utf8_event_groups())
        self.assertIn('invalid byte sequence for encoding "UTF8"', err)

    def test_sql_ascii_directive(self):
        """XXX A directive column with bad bytes fails the whole scan today
        (the grouping query reads every pending directive), so nothing is
        sent until an operator deletes or fixes the row; see docs/security.md.
        Checked here: a clear ERROR, a non-zero exit, nothing sent or marked."""
        groups = [Group("ok1", good=True),
                  Group("rcpt_not_utf8", rcpt=b"r\xffx@example.net")]
        self.insert(groups)
        rc, out, err = run_cbmail(["--all"], self.config())
        self.assertNotEqual(rc, 0, err)
        lines = mc.error_lines(err)
        self.assertEqual(len(lines), 1, err)
        self.assertIn("scan", lines[0])
        self.assertIn('invalid byte sequence for encoding "UTF8"', lines[0])
        self.assertEqual(self.smtp.count(), 0)
        self.assertEqual(len(self.pending()), 2)


class NotUtf8DaemonTest(HostileTestBase):
    encoding = "SQL_ASCII"

    def test_sql_ascii_event_fields(self):
        self.run_daemon(not_utf8_event_groups())


if __name__ == "__main__":
    run_tests()
