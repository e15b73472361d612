#!/usr/bin/python3
"""intelmqcbmail end to end: pending directives -> signed mails -> tickets.

Real PostgreSQL, a real SMTP server (aiosmtpd sink) and a real gpg key
(ed25519, so micalg must be pgp-sha256), all started by harness.py.
"""

import datetime
import email.utils
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (DEFAULT_EVENT_FIELDS, GpgHome, PgCluster, SmtpSink,  # noqa: E402
                     TempDir, make_config, make_directive, run_cbmail, run_tests,
                     wait_until)
import mailcheck as mc  # noqa: E402

SENDER = "CERT Example <cert@example.org>"
SENDER_ADDR = "cert@example.org"

BEGIN, END = "--- events ---", "--- end ---"

TEMPLATES = {
    "inline-obs.txt": (
        "[CERT Example #${ticket_number}] Open resolvers in AS${source.asn}\n"
        "\n"
        "Dear Sir or Madam,\n"
        "\n"
        "observed at ${time.observation}:\n"
        "\n"
        + BEGIN + "\n"
        "${events_as_csv}\n"
        + END + "\n"
        "\n"
        "Ticket: ${ticket_number}\n"
        "This costs you $$0.\n"),
    "attach.txt": (
        "[CERT Example #${ticket_number}] Infected hosts in AS${source.asn}\n"
        "\n"
        "Dear Sir or Madam,\n"
        "\n"
        "the affected hosts are listed in the attached file events.csv.\n"
        "Ticket: ${ticket_number}\n"),
    "umlaut.txt": (
        "St\u00f6rung in AS${source.asn} [CERT #${ticket_number}]\n"
        "\n"
        "Sehr geehrte Damen und Herren,\n"
        "\n"
        "From the logs we see the following hosts:\n"
        + BEGIN + "\n"
        "${events_as_csv}\n"
        + END + "\n"
        "From here on, please quote ticket ${ticket_number}.\n"
        "\n"
        "Mit freundlichen Gr\u00fc\u00dfen\n"),
    "inline.txt": (
        "[CERT #${ticket_number}] Report for AS${source.asn}\n"
        "\n"
        + BEGIN + "\n"
        "${events_as_csv}\n"
        + END + "\n"
        "Ticket: ${ticket_number}\n"),
    "broken.txt": (
        "[CERT #${ticket_number}] Report for AS${source.asn}\n"
        "\n"
        "${nope}\n"),
}


def csv_block(text):
    """The CSV rows of an inline table without markers: from the header line
    '"asn",...' up to the next empty line."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith('"asn","ip"'))
    out = []
    for ln in lines[start:]:
        if ln.strip() == "":
            break
        out.append(ln)
    return mc.csv_rows("\n".join(out))


class CbmailSendTest(unittest.TestCase):
    pg = gpg = smtp = tdir = None

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.gpg = GpgHome()
        cls.smtp = SmtpSink()
        cls.tdir = TempDir("mgtpl")
        for name, text in TEMPLATES.items():
            with open(os.path.join(cls.tdir.path, name), "w", encoding="utf-8") as f:
                f.write(text)

    @classmethod
    def tearDownClass(cls):
        for obj in (cls.smtp, cls.gpg, cls.pg, cls.tdir):
            if obj is not None:
                obj.cleanup()

    def setUp(self):
        self.smtp.clear()
        self.db = self.pg.create_db("s_" + self._testMethodName[5:40].lower())

    def tearDown(self):
        self.pg.drop_db(self.db)

    # ---------------------------------------------------------------- helpers

    def config(self, **kw):
        kw.setdefault("template_dir", self.tdir.path)
        kw.setdefault("sender", SENDER)
        kw.setdefault("gpg", self.gpg)
        return make_config(pg=self.pg, db=self.db, smtp=self.smtp, **kw)

    def cbmail(self, args, cfg=None, input=None):
        rc, out, err = run_cbmail(args, cfg or self.config(), input=input)
        self._last = (rc, out, err)
        return rc, out, err

    def out_msg(self):
        rc, out, err = self._last
        return "\nexit status %s\n--- stdout\n%s--- stderr\n%s" % (rc, out, err)

    def assert_summary(self, out, sent, postponed=0, errors=0, simulation=False):
        self.assertEqual(mc.summary(out), (simulation, sent, postponed, errors), self.out_msg())

    def directive_rows(self):
        """[(id, events_id, recipient, template, edf, agg text, sent_id or None)]"""
        rows = self.pg.query(self.db, "SELECT id, events_id, recipient_address, template_name,"
                             " event_data_format, aggregate_identifier::text,"
                             " coalesce(sent_id::text, '') FROM directives ORDER BY id")
        return [(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], int(r[6]) if r[6] else None)
                for r in rows]

    def sent_tickets(self):
        """{sent.id: ticket}"""
        return {int(i): t for i, t in self.pg.query(self.db, "SELECT id, intelmq_ticket FROM sent")}

    def assert_common_headers(self, msg, raw, env, recipient, sender_addr=SENDER_ADDR,
                              display="CERT Example"):
        self.assertEqual(env["mail_from"], sender_addr)
        self.assertEqual(env["rcpt_tos"], [recipient])
        self.assertEqual(mc.from_address(msg), (display, sender_addr))
        self.assertEqual(email.utils.parseaddr(str(msg["To"]))[1], recipient)
        self.assertEqual(mc.message_id_domain(msg), sender_addr.split("@")[1])
        date = email.utils.parsedate_to_datetime(str(msg["Date"]))
        now = datetime.datetime.now(datetime.timezone.utc)
        self.assertLess(abs((now - date).total_seconds()), 600, "Date header %s" % msg["Date"])
        self.assertEqual(str(msg["MIME-Version"]).strip(), "1.0")
        self.assertEqual(mc.bare_lf(raw), [], "bare LF in the message")
        for line in raw.split(b"\r\n"):
            self.assertFalse(line.startswith(b"From "), "line starts with 'From ': %r" % line)
        for line in raw.split(b"\r\n"):
            self.assertLessEqual(len(line), 998, "line longer than 998 bytes")
        self.assertTrue(all(b < 0x80 for b in raw), "8-bit bytes in the message")
        self.assertEqual(len(msg.get_all("Message-Id")), 1)

    def assert_signed(self, msg, raw):
        self.assertEqual(msg.get_content_type(), "multipart/signed")
        self.assertEqual(msg.get_param("protocol"), "application/pgp-signature")
        self.assertEqual(msg.get_param("micalg"), "pgp-sha256")
        parts = msg.get_payload()
        self.assertEqual(len(parts), 2)
        self.assertEqual(parts[1].get_content_type(), "application/pgp-signature")
        signed, sig = mc.signed_parts(raw)
        self.assertIn(b"-----BEGIN PGP SIGNATURE-----", sig)
        ok, detail = self.gpg.verify(signed, sig)
        self.assertTrue(ok, "signature does not verify:\n" + detail)
        self.assertIn("VALIDSIG " + self.gpg.fingerprint, detail)
        # the same bytes with one byte changed must not verify (we cut the right part)
        bad = signed.replace(b"Ticket", b"Tickex", 1) if b"Ticket" in signed else signed + b" "
        self.assertFalse(self.gpg.verify(bad, sig)[0], "signature verifies altered data")
        return parts[0]

    def assert_text_part(self, part):
        self.assertEqual(part.get_content_type(), "text/plain")
        self.assertEqual(str(part["Content-Transfer-Encoding"]).strip().lower(),
                         "quoted-printable")
        self.assertEqual(part.get_content_charset(), "utf-8")
        return part.get_content().replace("\r\n", "\n")

    def expected_rows(self, event_fields):
        return sorted(mc.expected_csv_row(f, DEFAULT_EVENT_FIELDS) for f in event_fields)

    # ------------------------------------------------------------------ tests

    def test_send_all_one_signed_mail_per_group(self):
        agg1 = {"source.asn": 64496, "time.observation": "2026-11-26T06:00:00+00:00"}
        agg2 = {"source.asn": 64496, "time.observation": "2026-11-26T07:00:00+00:00"}
        dir_g1 = make_directive("abuse@as64496.example", "inline-obs.txt",
                                event_data_format="csv_open-dns", aggregate_identifier=agg1)
        dir_g2 = make_directive("abuse@as64496.example", "inline-obs.txt",
                                event_data_format="csv_open-dns", aggregate_identifier=agg2)
        dir_g3 = make_directive("cert@net.example", "attach.txt",
                                notification_format="malware",
                                event_data_format="csv_malware_csv_attachment",
                                aggregate_identifier={"source.asn": 64497})
        dir_g4 = make_directive("noc@isp.example", "umlaut.txt",
                                event_data_format="csv_inline",
                                aggregate_identifier={"source.asn": 64498})
        events = [
            # e1: in two groups; a host name that needs CSV quoting; non-UTC time
            ({"source.ip": "192.0.2.1", "time.source": "2026-11-26T07:30:15+02:00",
              "source.port": 53, "destination.ip": "198.51.100.7", "destination.port": 4444,
              "destination.fqdn": 'c2,"evil".example', "protocol.transport": "tcp"},
             [dir_g1, dir_g3]),
            # e2: NULLs must become empty fields
            ({"source.ip": "192.0.2.2", "source.port": None, "protocol.transport": None,
              "time.source": "2026-11-25T23:59:59-05:00"}, [dir_g1]),
            ({"source.ip": "2001:db8::1", "source.port": 5353}, [dir_g2]),
            ({"source.ip": "203.0.113.9", "source.asn": 64497}, [dir_g3]),
            ({"source.ip": "203.0.113.10", "source.asn": 64498}, [dir_g4]),
            ({"source.ip": "203.0.113.11", "source.asn": 64498, "destination.port": 80},
             [dir_g4]),
        ]
        ids = self.pg.insert_events(self.db, [{"fields": f, "directives": d} for f, d in events])
        fields_of = dict(zip(ids, (f for f, _ in events)))
        # group name -> (recipient, template, event ids)
        groups = {
            "g1": ("abuse@as64496.example", "inline-obs.txt", {ids[0], ids[1]}),
            "g2": ("abuse@as64496.example", "inline-obs.txt", {ids[2]}),
            "g3": ("cert@net.example", "attach.txt", {ids[0], ids[3]}),
            "g4": ("noc@isp.example", "umlaut.txt", {ids[4], ids[5]}),
        }
        directives = self.directive_rows()
        self.assertEqual(len(directives), 7)

        def group_of(row):
            _, eid, rcpt, tmpl, _, _, _ = row
            names = [g for g, (r, t, evs) in groups.items()
                     if r == rcpt and t == tmpl and eid in evs]
            self.assertEqual(len(names), 1, row)
            return names[0]

        dids_of = {g: set() for g in groups}
        for row in directives:
            dids_of[group_of(row)].add(row[0])

        day_before = mc.db_today(self.pg, self.db)
        rc, out, err = self.cbmail(["--all"])
        day_after = mc.db_today(self.pg, self.db)
        self.assertEqual(rc, 0, self.out_msg())
        self.assert_summary(out, sent=4)
        self.assertEqual(mc.error_lines(err), [], self.out_msg())
        msgs = self.smtp.wait_for(4)
        self.assertEqual(len(msgs), 4, "exactly one mail per group")

        # every directive is linked to a sent row; one sent row per group
        sent = self.sent_tickets()
        self.assertEqual(len(sent), 4)
        directives = self.directive_rows()
        sent_id_of_group = {}
        for row in directives:
            self.assertIsNotNone(row[6], "directive %d not linked to a sent row" % row[0])
            g = group_of(row)
            sent_id_of_group.setdefault(g, row[6])
            self.assertEqual(sent_id_of_group[g], row[6],
                             "directives of group %s linked to different sent rows" % g)
        self.assertEqual(len(set(sent_id_of_group.values())), 4)
        group_of_ticket = {sent[sid]: g for g, sid in sent_id_of_group.items()}

        # tickets: YYYYMMDD-NNNNNNNN, the first of the day is 10000001
        tickets = sorted(sent.values())
        for t in tickets:
            self.assertRegex(t, r"^\d{8}-\d{8}$")
            self.assertIn(t[:8], (day_before, day_after))
        if day_before == day_after:
            self.assertEqual(tickets, ["%s-%08d" % (day_before, mc.SEQ_MIN + i)
                                       for i in range(4)])

        seen = set()
        for env, raw in msgs:
            msg = mc.parse_mail(raw)
            ticket = mc.ticket_in_subject(msg)
            self.assertIn(ticket, group_of_ticket, "Subject ticket not in table sent")
            g = group_of_ticket[ticket]
            self.assertNotIn(g, seen, "two mails for group %s" % g)
            seen.add(g)
            recipient, template, evs = groups[g]
            with self.subTest(group=g, ticket=ticket):
                self.assert_common_headers(msg, raw, env, recipient)
                first = self.assert_signed(msg, raw)
                want_rows = self.expected_rows(fields_of[e] for e in evs)
                if g == "g3":
                    self.assertEqual(first.get_content_type(), "multipart/mixed")
                    sub = first.get_payload()
                    self.assertEqual(len(sub), 2)
                    text = self.assert_text_part(sub[0])
                    self.assertNotIn('"asn","ip"', text)
                    att = sub[1]
                    self.assertEqual(att.get_content_type(), "text/csv")
                    self.assertEqual(att.get_filename(), "events.csv")
                    self.assertEqual(att.get_content_disposition(), "attachment")
                    rows = mc.csv_rows(att.get_content())
                else:
                    text = self.assert_text_part(first)
                    rows = mc.csv_between(text, BEGIN, END)
                self.assertIn("Ticket: %s" % ticket if g != "g4" else ticket, text)
                self.assertEqual(rows[0], mc.FALLBACK_TITLES)
                self.assertEqual(sorted(rows[1:]), want_rows)
                subject = str(msg["Subject"])
                if g in ("g1", "g2"):
                    self.assertEqual(subject, "[CERT Example #%s] Open resolvers in AS64496"
                                     % ticket)
                    obs = "2026-11-26T06:00:00+00:00" if g == "g1" else "2026-11-26T07:00:00+00:00"
                    self.assertIn("observed at %s:" % obs, text)
                    self.assertIn("This costs you $0.", text)
                elif g == "g3":
                    self.assertEqual(subject, "[CERT Example #%s] Infected hosts in AS64497"
                                     % ticket)
                else:
                    self.assertEqual(subject, "St\u00f6rung in AS64498 [CERT #%s]" % ticket)
                    raw_subject = mc.raw_header(raw, "Subject")
                    self.assertTrue(all(b < 0x80 for b in raw_subject))
                    self.assertRegex(raw_subject.decode("ascii"), r"(?i)=\?utf-8\?[bq]\?")
                    self.assertIn("Mit freundlichen Gr\u00fc\u00dfen", text)
                    self.assertIn("\nFrom the logs we see the following hosts:\n", text)
                    self.assertIn("\nFrom here on, please quote ticket %s.\n" % ticket, text)
        self.assertEqual(seen, set(groups))

        # a second run finds nothing to do
        rc, out, err = self.cbmail(["--all"])
        self.assertEqual(rc, 0, self.out_msg())
        self.assert_summary(out, sent=0)
        self.assertEqual(self.smtp.count(), 4)
        self.assertEqual(len(self.sent_tickets()), 4)

    def test_spreadsheet_safe_csv(self):
        # A host name a feed reported as a formula: neutralised only when asked.
        fields = {"destination.fqdn": "=HYPERLINK(\"http://x.example\")",
                  "protocol.transport": "+udp"}
        for safe, want_host, want_proto in ((False, fields["destination.fqdn"], "+udp"),
                                            (True, "'" + fields["destination.fqdn"], "'+udp")):
            self.smtp.clear()
            self.pg.insert_events(self.db, [
                {"fields": fields,
                 "directives": [make_directive("abuse@as64496.example", "inline.txt")]}])
            cfg = self.config(gpg=None, always_sign=False)
            if safe:
                cfg["delivery"] = {"csv_spreadsheet_safe": True}
            rc, out, err = self.cbmail(["--all"], cfg)
            self.assertEqual(rc, 0, self.out_msg())
            (env, raw), = self.smtp.wait_for(1)
            rows = mc.csv_between(self.assert_text_part(mc.parse_mail(raw)), BEGIN, END)
            self.assertEqual(rows[0], mc.FALLBACK_TITLES)  # titles untouched
            self.assertEqual(rows[1][6], want_host)
            self.assertEqual(rows[1][7], want_proto)

    def test_recipient_limit_postpones(self):
        # three groups (three networks) for one address, one for another
        self.pg.insert_events(self.db, [
            {"fields": {"source.asn": asn},
             "directives": [make_directive("abuse@isp.example", "inline.txt",
                                           aggregate_identifier={"source.asn": asn})]}
            for asn in (64496, 64497, 64498)] + [
            {"directives": [make_directive("other@isp.example", "inline.txt")]}])
        cfg = self.config(gpg=None, always_sign=False)
        cfg["delivery"] = {"recipient_max_mails": 2, "recipient_window_seconds": 3600}
        rc, out, err = self.cbmail(["--all"], cfg)
        self.assertEqual(rc, 0, self.out_msg())
        self.assert_summary(out, sent=3, postponed=1)
        rcpts = sorted(env["rcpt_tos"][0] for env, _ in self.smtp.wait_for(3))
        self.assertEqual(rcpts, ["abuse@isp.example", "abuse@isp.example",
                                 "other@isp.example"])
        self.assertIn("limit delivery.recipient_max_mails", err)
        # the window still holds two mails: the third group waits
        rc, out, err = self.cbmail(["--all"], cfg)
        self.assert_summary(out, sent=0, postponed=1)
        # with a larger limit it goes out
        cfg["delivery"]["recipient_max_mails"] = 3
        rc, out, err = self.cbmail(["--all"], cfg)
        self.assert_summary(out, sent=1)

    def test_unsigned_mode_plain_text_mail(self):
        # the shipped example templates, a sender without display name
        ids = self.pg.insert_events(self.db, [
            {"directives": [make_directive("abuse@as64496.example", "example-template.txt")]},
            {"fields": {"source.ip": "192.0.2.77"},
             "directives": [make_directive("abuse@as64496.example",
                                           "example-template-attachment.txt",
                                           event_data_format="csv_x_csv_attachment")]},
        ])
        cfg = self.config(gpg=None, always_sign=False, sender="noc@cert.example.net",
                          template_dir=os.path.join(mc_source_dir(), "conf", "templates"))
        cfg["openpgp"]["gnupg_home"] = self.gpg.home  # present but not used
        rc, out, err = self.cbmail(["--all"], cfg)
        self.assertEqual(rc, 0, self.out_msg())
        self.assert_summary(out, sent=2)
        msgs = self.smtp.wait_for(2)
        self.assertEqual(len(msgs), 2)
        sent = set(self.sent_tickets().values())
        kinds = set()
        for env, raw in msgs:
            msg = mc.parse_mail(raw)
            self.assert_common_headers(msg, raw, env, "abuse@as64496.example",
                                       sender_addr="noc@cert.example.net", display="")
            ticket = mc.ticket_in_subject(msg)
            self.assertIn(ticket, sent)
            self.assertNotIn(b"PGP SIGNATURE", raw)
            if msg.get_content_type() == "text/plain":
                kinds.add("inline")
                text = self.assert_text_part(msg)
                self.assertIn("keep the ticket\nnumber %s in the subject" % ticket, text)
                rows = csv_block(text)
                self.assertEqual(rows, [mc.FALLBACK_TITLES,
                                        mc.expected_csv_row({}, DEFAULT_EVENT_FIELDS)])
            else:
                kinds.add("attachment")
                self.assertEqual(msg.get_content_type(), "multipart/mixed")
                text_part, att = msg.get_payload()
                self.assert_text_part(text_part)
                self.assertEqual(att.get_filename(), "events.csv")
                self.assertEqual(mc.csv_rows(att.get_content()),
                                 [mc.FALLBACK_TITLES,
                                  mc.expected_csv_row({"source.ip": "192.0.2.77"},
                                                      DEFAULT_EVENT_FIELDS)])
        self.assertEqual(kinds, {"inline", "attachment"})
        self.assertEqual(len(ids), 2)

    def test_csv_time_is_utc_whatever_the_session_time_zone(self):
        self.pg.psql("postgres", "ALTER DATABASE %s SET timezone TO 'Asia/Tokyo';" % self.db)
        times = ["2026-11-26T07:30:15+02:00", "2026-11-27T01:00:00+09:00",
                 "2026-11-26T23:59:59+00:00"]
        self.pg.insert_events(self.db, [
            {"fields": {"time.source": t, "source.ip": "192.0.2.%d" % (i + 1)},
             "directives": [make_directive("abuse@as64496.example", "inline.txt")]}
            for i, t in enumerate(times)])
        rc, out, err = self.cbmail(["--all"])
        self.assertEqual(rc, 0, self.out_msg())
        (env, raw), = self.smtp.wait_for(1)
        text = mc.parse_mail(raw).get_payload()[0].get_content()
        rows = mc.csv_between(text, BEGIN, END)
        stamps = sorted(r[2] for r in rows[1:])
        self.assertEqual(stamps, ["2026-11-26 05:30:15", "2026-11-26 16:00:00",
                                  "2026-11-26 23:59:59"])

    def _sent_recently(self, interval):
        """A group that was mailed a moment ago plus a new pending directive
        with the same five keys; returns the pending directive's id."""
        d = make_directive("abuse@as64496.example", "inline.txt",
                           notification_interval=interval)
        self.pg.insert_event(self.db, [d])
        rc, out, err = self.cbmail(["--all"])
        self.assertEqual(rc, 0, self.out_msg())
        self.assert_summary(out, sent=1)
        self.pg.insert_event(self.db, [d], fields={"source.ip": "192.0.2.99"})
        return int(self.pg.scalar(self.db, "SELECT max(id) FROM directives"))

    def test_postponed_while_interval_not_over(self):
        pending = self._sent_recently(3600)
        rc, out, err = self.cbmail(["--all"])
        self.assertEqual(rc, 0, self.out_msg())
        self.assert_summary(out, sent=0, postponed=1)
        self.assertEqual(self.smtp.count(), 1)
        self.assertEqual(self.pg.scalar(self.db, "SELECT sent_id IS NULL FROM directives"
                                        " WHERE id = %d" % pending), "t")
        # once the last mail is older than the interval, the group is due
        self.pg.psql(self.db, "UPDATE sent SET sent_at = now() - interval '3601 seconds';")
        rc, out, err = self.cbmail(["--all"])
        self.assertEqual(rc, 0, self.out_msg())
        self.assert_summary(out, sent=1)
        self.assertEqual(self.smtp.count(), 2)
        self.assertEqual(self.pg.scalar(self.db, "SELECT count(*) FROM directives"
                                        " WHERE sent_id IS NULL"), "0")

    def test_interval_zero_sent_after_a_second(self):
        self._sent_recently(0)
        self.pg.psql(self.db, "UPDATE sent SET sent_at = sent_at - interval '1 second';")
        rc, out, err = self.cbmail(["--all"])
        self.assertEqual(rc, 0, self.out_msg())
        self.assert_summary(out, sent=1)
        self.assertEqual(self.smtp.count(), 2)


    def test_interval_zero_is_sent_at_once(self):
        self._sent_recently(0)
        # the last mail went out earlier in the current second
        wait_until(lambda: time.time() % 1.0 < 0.3, timeout=3, what="the start of a second")
        t0 = time.time()
        self.pg.psql(self.db, "UPDATE sent SET sent_at = date_trunc('second', clock_timestamp());")
        rc, out, err = self.cbmail(["--all"])
        if int(time.time()) != int(t0):
            self.skipTest("the run crossed a second boundary; cannot show the case")
        self.assertEqual(rc, 0, self.out_msg())
        self.assert_summary(out, sent=1)
        self.assertEqual(self.smtp.count(), 2)

    def test_last_sent_is_that_of_the_latest_inserted_sent_directive(self):
        d = make_directive("abuse@as64496.example", "inline.txt", notification_interval=3600)
        self.pg.insert_events(self.db, [{"directives": [d]} for _ in range(3)])
        d1, d2, d3 = [int(r[0]) for r in self.pg.query(self.db,
                                                       "SELECT id FROM directives ORDER BY id")]
        # d1 (inserted 3 h ago) and d2 (1 h ago) were sent; d3 is pending
        self.pg.psql(self.db, """
            INSERT INTO sent (id, intelmq_ticket, sent_at) VALUES
                (1001, '20000101-00000001', now()),
                (1002, '20000101-00000002', now() - interval '2 hours');
            UPDATE directives SET inserted_at = now() - interval '3 hours' WHERE id = %d;
            UPDATE directives SET inserted_at = now() - interval '1 hour' WHERE id = %d;
        """ % (d1, d2))
        # the latest inserted sent directive (d2) was mailed just now: postponed
        self.pg.psql(self.db, "UPDATE directives SET sent_id = 1002 WHERE id = %d;"
                              "UPDATE directives SET sent_id = 1001 WHERE id = %d;" % (d1, d2))
        rc, out, err = self.cbmail(["--all"])
        self.assertEqual(rc, 0, self.out_msg())
        self.assert_summary(out, sent=0, postponed=1)
        # now d2's mail is 2 hours old (d1's mail of a moment ago does not count)
        self.pg.psql(self.db, "UPDATE directives SET sent_id = 1001 WHERE id = %d;"
                              "UPDATE directives SET sent_id = 1002 WHERE id = %d;" % (d1, d2))
        rc, out, err = self.cbmail(["--all"])
        self.assertEqual(rc, 0, self.out_msg())
        self.assert_summary(out, sent=1)
        self.assertEqual(self.pg.scalar(self.db, "SELECT sent_id IS NOT NULL FROM directives"
                                        " WHERE id = %d" % d3), "t")

    def test_dry_run_changes_nothing(self):
        self.pg.insert_events(self.db, [
            {"directives": [make_directive("a@example.net", "inline.txt")]},
            {"directives": [make_directive("b@example.net", "attach.txt",
                                           event_data_format="x_csv_attachment")]},
            {"directives": [make_directive("c@example.net", "umlaut.txt")]},
            {"directives": [make_directive("d@example.net", "broken.txt")]},
        ])
        before = mc.db_snapshot(self.pg, self.db)
        rc, out, err = self.cbmail(["-n", "--all"])
        # rendering happens: the broken template is found out even in a dry run
        self.assertNotEqual(rc, 0, self.out_msg())
        self.assertTrue(out.lstrip().startswith("Simulation: 3 mails sent"), self.out_msg())
        self.assert_summary(out, sent=3, errors=1, simulation=True)
        self.assertEqual(len(mc.error_lines(err)), 1, self.out_msg())
        self.assertEqual(mc.db_snapshot(self.pg, self.db), before)
        self.assertEqual(self.smtp.count(), 0)
        # where the log names a ticket, it is the stand-in YYYYMMDD-00000000
        for t in re.findall(r"ticket=(\S+)", err):
            self.assertRegex(t, r"^\d{8}-00000000$")

        # without the broken group a dry run succeeds
        self.pg.psql(self.db, "DELETE FROM directives WHERE recipient_address = 'd@example.net';")
        before = mc.db_snapshot(self.pg, self.db)
        rc, out, err = self.cbmail(["--dry-run", "--all"])
        self.assertEqual(rc, 0, self.out_msg())
        self.assertTrue(out.lstrip().startswith("Simulation: 3 mails sent"), self.out_msg())
        self.assert_summary(out, sent=3, simulation=True)
        self.assertEqual(mc.db_snapshot(self.pg, self.db), before)
        self.assertEqual(self.smtp.count(), 0)

        # the real run afterwards starts at the first ticket of the day
        day = mc.db_today(self.pg, self.db)
        rc, out, err = self.cbmail(["--all"])
        self.assertEqual(rc, 0, self.out_msg())
        self.assert_summary(out, sent=3)
        self.assertEqual(self.smtp.count(), 3)
        if day == mc.db_today(self.pg, self.db):
            self.assertEqual(sorted(self.sent_tickets().values()),
                             ["%s-%08d" % (day, mc.SEQ_MIN + i) for i in range(3)])

    def test_interactive_batches(self):
        self.pg.insert_events(self.db, [
            {"directives": [make_directive("first@example.net", "inline.txt")]},
            {"directives": [make_directive("first@example.net", "inline.txt")],
             "fields": {"source.ip": "192.0.2.50"}},
            {"directives": [make_directive("second@example.net", "attach.txt",
                                           notification_format="malware",
                                           event_data_format="x_csv_attachment")]},
        ])
        line1 = "first@example.net inline.txt (shadowserver/csv_test): 2 events"
        line2 = "second@example.net attach.txt (malware/x_csv_attachment): 1 events"
        prompt = "[c]ontinue (skip), [s]end this batch, send [a]ll, [q]uit? "

        def recipients():
            return sorted(env["rcpt_tos"][0] for env in self.smtp.envelopes())

        # end of input: quit
        rc, out, err = self.cbmail(["-N", "1"], input="")
        self.assertEqual(rc, 0, self.out_msg())
        self.assertIn(line1, out)
        self.assertIn(prompt, out)
        self.assertNotIn(line2, out)
        self.assert_summary(out, sent=0)

        # q: quit at once
        rc, out, err = self.cbmail(["-N", "1"], input="q\n")
        self.assertEqual(rc, 0, self.out_msg())
        self.assertEqual(out.count(line1), 1, self.out_msg())
        self.assertNotIn(line2, out)
        self.assert_summary(out, sent=0)
        self.assertEqual(self.smtp.count(), 0)

        # c, s: skip the first batch, send the second
        rc, out, err = self.cbmail(["-N", "1"], input="c\ns\n")
        self.assertEqual(rc, 0, self.out_msg())
        self.assertEqual(out.count(line1), 1, self.out_msg())
        self.assertEqual(out.count(line2), 1, self.out_msg())
        self.assertLess(out.index(line1), out.index(line2))
        self.assert_summary(out, sent=1)
        self.assertEqual(recipients(), ["second@example.net"])

        # a: send all (only the first group is left)
        rc, out, err = self.cbmail(["-N", "1"], input="a\n")
        self.assertEqual(rc, 0, self.out_msg())
        self.assertEqual(out.count(line1), 1, self.out_msg())
        self.assertNotIn(line2, out)
        self.assert_summary(out, sent=1)
        self.assertEqual(recipients(), ["first@example.net", "second@example.net"])
        self.assertEqual(self.pg.scalar(self.db, "SELECT count(*) FROM directives"
                                        " WHERE sent_id IS NULL"), "0")

    def test_interactive_batch_of_two_send_all_at_once(self):
        for i in range(3):
            self.pg.insert_event(self.db, [make_directive("r%d@example.net" % i, "inline.txt")])
        # -N 2: the first batch shows two groups, "s" sends both; then quit (EOF)
        rc, out, err = self.cbmail(["--batch-size", "2"], input="s\n")
        self.assertEqual(rc, 0, self.out_msg())
        self.assertIn("r0@example.net inline.txt", out)
        self.assertIn("r1@example.net inline.txt", out)
        self.assertIn("r2@example.net inline.txt", out)  # second batch shown, then EOF
        self.assert_summary(out, sent=2)
        self.assertEqual(sorted(e["rcpt_tos"][0] for e in self.smtp.envelopes()),
                         ["r0@example.net", "r1@example.net"])


    def test_interactive_quit_after_batch_of_two(self):
        for i in range(3):
            self.pg.insert_event(self.db, [make_directive("r%d@example.net" % i, "inline.txt")])
        for answer in ("q\n", ""):
            with self.subTest(answer=answer):
                rc, out, err = self.cbmail(["-N", "2"], input=answer)
                self.assertEqual(rc, 0, self.out_msg())
                self.assertIn("r1@example.net inline.txt", out)
                self.assert_summary(out, sent=0)
        self.assertEqual(self.smtp.count(), 0)


def mc_source_dir():
    import harness
    return harness.SOURCE_DIR


if __name__ == "__main__":
    run_tests()
