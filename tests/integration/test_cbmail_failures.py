#!/usr/bin/python3
"""intelmqcbmail when things go wrong: bad input in the database, an SMTP
server that refuses or is down, a broken config.

A failure costs only its own group: one ERROR line naming its directive_ids
and event_ids, the group stays pending (sent_id NULL, no sent row), every
other group of the run is delivered, and the exit status is non-zero.
"""

import copy
import json
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (GpgHome, PgCluster, SmtpSink, TempDir, make_config,  # noqa: E402
                     make_directive, run_cbmail, run_tests, sql_literal,
                     wait_until)
import mailcheck as mc  # noqa: E402

GOOD = "good.txt"
TEMPLATES = {
    GOOD: ("Report ${ticket_number} for AS${source.asn}\n"
           "\n"
           "Ticket ${ticket_number}\n"
           "${events_as_csv}\n"),
    "plain.txt": ("Report ${ticket_number}\n"
                  "\n"
                  "${events_as_csv}\n"),
    "dollar.txt": ("Report ${ticket_number}\n"
                   "\n"
                   "That costs $ 5.\n"),
    "nope.txt": ("Report ${ticket_number}\n"
                 "\n"
                 "Hello ${nope}\n"),
    "nope-subject.txt": ("Report ${nope} ${ticket_number}\n"
                         "\n"
                         "Hello\n"),
}
# A valid template outside template_dir: if a path escaped template_dir,
# the group would be mailed with it.
OUTSIDE = ("Leaked ${ticket_number}\n"
           "\n"
           "This template lies outside template_dir.\n")

EVIL = "evil@example.org"


class FailureTestBase(unittest.TestCase):
    pg = gpg = smtp = tdir = None

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.gpg = GpgHome()
        cls.smtp = SmtpSink()
        cls.tdir = TempDir("mgtpl")
        cls.template_dir = os.path.join(cls.tdir.path, "templates")
        os.mkdir(cls.template_dir)
        for name, text in TEMPLATES.items():
            with open(os.path.join(cls.template_dir, name), "w") as f:
                f.write(text)
        cls.outside = os.path.join(cls.tdir.path, "outside.txt")
        with open(cls.outside, "w") as f:
            f.write(OUTSIDE)

    @classmethod
    def tearDownClass(cls):
        for obj in (cls.smtp, cls.gpg, cls.pg, cls.tdir):
            if obj is not None:
                obj.cleanup()

    def setUp(self):
        if not self.smtp.running:
            self.smtp.start()
        self.smtp.set_options({})
        self.smtp.clear()
        self.db = self.pg.create_db("f_" + self._testMethodName[5:40].lower())

    def tearDown(self):
        self.pg.drop_db(self.db)
        if not self.smtp.running:
            self.smtp.start()
        self.smtp.set_options({})

    # ---------------------------------------------------------------- helpers

    def config(self, **kw):
        kw.setdefault("template_dir", self.template_dir)
        return make_config(pg=self.pg, db=self.db, gpg=self.gpg, smtp=self.smtp,
                           sender="CERT Example <cert@example.org>", **kw)

    def cbmail(self, args=("--all",), cfg=None):
        rc, out, err = run_cbmail(list(args), cfg or self.config())
        self._last = (rc, out, err)
        return rc, out, err

    def out_msg(self):
        rc, out, err = self._last
        return "\nexit status %s\n--- stdout\n%s--- stderr\n%s" % (rc, out, err)

    def insert_groups(self, specs):
        """specs: list of (name, directive) or (name, directive, n_events);
        one event each unless n_events says otherwise.  Returns
        {name: (directive ids, event ids)} as frozensets."""
        events, names = [], []
        for spec in specs:
            name, d = spec[0], spec[1]
            for k in range(spec[2] if len(spec) > 2 else 1):
                events.append({"directives": [d], "fields": {"source.ip": "192.0.2.%d" % (k + 1)}})
                names.append(name)
        ids = self.pg.insert_events(self.db, events)
        rows = self.pg.query(self.db, "SELECT events_id, id FROM directives")
        by_event = {}
        for eid, did in rows:
            by_event.setdefault(int(eid), set()).add(int(did))
        dids, eids = {}, {}
        for name, eid in zip(names, ids):
            self.assertEqual(len(by_event.get(eid, ())), 1, "directive of %s not stored" % name)
            dids.setdefault(name, set()).update(by_event[eid])
            eids.setdefault(name, set()).add(eid)
        self._groups = {name: (frozenset(dids[name]), frozenset(eids[name])) for name in dids}
        return self._groups

    def failed_states(self):
        """{name: state} of mailgen_failed_groups, by the names
        insert_groups() was given (matched through the directive ids)."""
        # (no address in the output: hostile ones hold '|' and line ends)
        rows = self.pg.query(self.db, "SELECT state, directive_ids::text"
                             " FROM mailgen_failed_groups")
        names = {}
        for state, dids in rows:
            ids = frozenset(int(x) for x in dids.strip("{}").split(",") if x)
            names[self._name_of_dids(ids)] = state
        return names

    def _name_of_dids(self, ids):
        for name, (dids, _) in self._groups.items():
            if dids == ids:
                return name
        return "?%s" % sorted(ids)

    def pending(self, dids):
        rows = self.pg.query(self.db, "SELECT id FROM directives WHERE sent_id IS NULL"
                             " AND id IN (%s)" % ",".join(str(d) for d in dids))
        return {int(r[0]) for r in rows}

    def linked(self):
        """{directive id: ticket} for directives linked to a sent row."""
        rows = self.pg.query(self.db, "SELECT d.id, s.intelmq_ticket FROM directives d"
                             " JOIN sent s ON s.id = d.sent_id")
        return {int(d): t for d, t in rows}

    def n_sent_rows(self):
        return int(self.pg.scalar(self.db, "SELECT count(*) FROM sent"))

    def recipients(self):
        return sorted(r for env in self.smtp.envelopes() for r in env["rcpt_tos"])

    def assert_failed_alone(self, err, groups, bad, good):
        """Exactly one ERROR line per bad group naming its ids, none for the
        good ones, bad groups pending, good ones linked to a sent row."""
        lines = mc.error_lines(err)
        named = {}
        for line in lines:
            dids, eids = mc.ids_of(line)
            self.assertIsNotNone(dids, "ERROR line without directive_ids: %r" % line)
            self.assertIsNotNone(eids, "ERROR line without event_ids: %r" % line)
            named.setdefault((dids, eids), []).append(line)
        for name in bad:
            with self.subTest(bad=name):
                self.assertEqual(len(named.get(groups[name], [])), 1,
                                 "want one ERROR line for %s %s%s" % (name, groups[name],
                                                                       self.out_msg()))
                self.assertEqual(self.pending(groups[name][0]), set(groups[name][0]))
        for name in good:
            self.assertNotIn(groups[name], named, "ERROR line for the good group " + name)
        self.assertEqual(len(lines), len(bad), self.out_msg())
        linked = self.linked()
        for name in good:
            for did in groups[name][0]:
                self.assertIn(did, linked, "good group %s not linked%s" % (name, self.out_msg()))
        for name in bad:
            for did in groups[name][0]:
                self.assertNotIn(did, linked)
        self.assertEqual(self.n_sent_rows(), len(good))


class BadInputTest(FailureTestBase):

    def bad_input_specs(self):
        D = make_directive
        return [
            ("ok1", D("ok1@example.net", GOOD)),
            ("missing_template", D("x1@example.net", "does-not-exist.txt")),
            ("dollar_space", D("x2@example.net", "dollar.txt")),
            ("unknown_name", D("x3@example.net", "nope.txt"), 3),
            ("unknown_name_subject", D("x3@example.net", "nope-subject.txt")),
            ("dotdot", D("x4@example.net", "../outside.txt")),
            ("dotdot_deep", D("x4@example.net", "templates/../../outside.txt")),
            ("etc_passwd", D("x5@example.net", "/etc/passwd")),
            ("absolute", D("x6@example.net", self.outside)),
            ("rcpt_crlf", D("victim@example.net\r\nBcc: %s" % EVIL, GOOD), 2),
            ("rcpt_lf", D("victim2@example.net\nBcc: %s" % EVIL, GOOD)),
            ("rcpt_two_at", D("a@b@example.net", GOOD)),
            ("rcpt_space", D("foo bar@example.net", GOOD)),
            ("rcpt_non_ascii", D("m\u00fcller@example.net", GOOD)),
            ("rcpt_no_at", D("postmaster", GOOD)),
            ("rcpt_angle", D("a@example.net>, <%s" % EVIL, GOOD)),
            ("agg_crlf_subject", D("x7@example.net", GOOD,
                                   aggregate_identifier={"source.asn":
                                                         "64496\r\nBcc: %s" % EVIL})),
            ("ok2", D("ok2@example.net", GOOD)),
        ]

    def test_bad_input_fails_only_its_own_group(self):
        specs = self.bad_input_specs()
        groups = self.insert_groups(specs)
        good = ["ok1", "ok2"]
        bad = [spec[0] for spec in specs if spec[0] not in good]
        self.assertEqual(len(groups["unknown_name"][0]), 3)

        rc, out, err = self.cbmail()
        self.assertNotEqual(rc, 0, self.out_msg())
        self.assertEqual(mc.summary(out), (False, 2, 0, len(bad)), self.out_msg())
        self.assert_failed_alone(err, groups, bad, good)
        self.assertNotIn("Traceback", err)
        # only the good groups reached the SMTP server, nothing was injected
        self.assertEqual(self.recipients(), ["ok1@example.net", "ok2@example.net"])
        for env, raw in self.smtp.messages():
            msg = mc.parse_mail(raw)
            self.assertIsNone(msg["Bcc"])
            self.assertNotIn(EVIL.encode(), raw)
            self.assertNotIn(b"Leaked", raw)
            self.assertNotIn(b"root:", raw)
            self.assertIn(mc.ticket_in_subject(msg), self.linked().values())
        # a group that fails after its ticket was drawn burns that one
        # number, once: it is in the failed state now
        self.assertLessEqual(mc.tickets_drawn(self.pg, self.db), len(good) + len(bad))
        self.assertEqual(self.failed_states(), {name: "failed" for name in bad})

        # the next run leaves them alone (no retry in a loop), sends nothing twice
        drawn = mc.tickets_drawn(self.pg, self.db)
        rc, out, err = self.cbmail()
        self.assertEqual(rc, 0, self.out_msg())
        self.assertEqual(mc.summary(out), (False, 0, 0, 0), self.out_msg())
        self.assertEqual(mc.error_lines(err), [], self.out_msg())
        self.assertEqual(self.smtp.count(), 2)
        self.assertEqual(mc.tickets_drawn(self.pg, self.db), drawn)
        for name in bad:
            self.assertEqual(self.pending(groups[name][0]), set(groups[name][0]))

    def test_null_aggregate_identifier_is_mailed(self):
        # The trigger always writes an aggregate identifier; an older or
        # hand-edited database can hold NULL.  Such a group is mailed (and
        # its interval kept) like one with an empty identifier.
        eids = self.pg.insert_events(self.db, [{}, {}])
        sql = ""
        for eid in eids:
            sql += ("INSERT INTO directives (events_id, medium, recipient_address,"
                    " template_name, notification_format, event_data_format,"
                    " aggregate_identifier, notification_interval, endpoint)"
                    " VALUES (%d, 'email', 'null-agg@example.net', %s, 'shadowserver',"
                    " 'csv_test', NULL, '1 day', 'source');\n"
                    % (eid, sql_literal("plain.txt")))
        self.pg.psql(self.db, sql)
        rc, out, err = self.cbmail()
        self.assertEqual((rc, mc.summary(out)), (0, (False, 1, 0, 0)), self.out_msg())
        self.assertEqual(self.recipients(), ["null-agg@example.net"])
        self.assertEqual(self.n_sent_rows(), 1)
        # a new directive of the same group waits for the interval
        eid = self.pg.insert_events(self.db, [{}])[0]
        self.pg.psql(self.db, sql.split(";\n")[0].replace("VALUES (%d," % eids[0],
                                                            "VALUES (%d," % eid) + ";")
        rc, out, err = self.cbmail()
        self.assertEqual((rc, mc.summary(out)), (0, (False, 0, 1, 0)), self.out_msg())

    def test_address_length_limit(self):
        # recipient_address is VARCHAR(100) in the schema; a deployment that
        # widened the column must still never hand an over-long path to SMTP.
        self.pg.psql(self.db, "ALTER TABLE directives"
                              " ALTER COLUMN recipient_address TYPE VARCHAR(400);")
        label63 = "d" * 63
        # 64 + 1 + 189 = 254 bytes: the longest valid address
        longest = "l" * 64 + "@" + label63 + "." + label63 + "." + "c" * 57 + ".net"
        too_long = "l" * 64 + "@" + label63 + "." + label63 + "." + "c" * 58 + ".net"
        huge = "a" * 288 + "@example.net"
        self.assertEqual((len(longest), len(too_long), len(huge)), (254, 255, 300))
        eids = self.pg.insert_events(self.db, [{} for _ in range(3)])
        sql = ""
        for eid, addr in zip(eids, (longest, too_long, huge)):
            sql += ("INSERT INTO directives (events_id, medium, recipient_address,"
                    " template_name, notification_format, event_data_format,"
                    " aggregate_identifier, notification_interval, endpoint)"
                    " VALUES (%d, 'email', %s, %s, 'shadowserver', 'csv_test',"
                    " '{{source.asn,64496}}', '0', 'source');\n"
                    % (eid, sql_literal(addr), sql_literal(GOOD)))
        self.pg.psql(self.db, sql)
        ids = {int(e): int(d) for e, d in self.pg.query(self.db,
                                                        "SELECT events_id, id FROM directives")}
        groups = {name: (frozenset([ids[eid]]), frozenset([eid]))
                  for name, eid in zip(("longest", "too_long", "huge"), eids)}
        rc, out, err = self.cbmail()
        self.assertNotEqual(rc, 0, self.out_msg())
        self.assertEqual(mc.summary(out), (False, 1, 0, 2), self.out_msg())
        self.assert_failed_alone(err, groups, ["too_long", "huge"], ["longest"])
        self.assertEqual(self.recipients(), [longest])


class SmtpFailureTest(FailureTestBase):

    def three_groups(self):
        return self.insert_groups([
            ("ok1", make_directive("ok1@example.net", GOOD)),
            ("bounce", make_directive("bounce@example.net", GOOD)),
            ("ok2", make_directive("ok2@example.net", GOOD)),
        ])

    def test_recipient_rejected_permanently(self):
        groups = self.three_groups()
        self.smtp.set_options({"reject_rcpt": {"bounce@example.net": [550, "5.1.1 no such user"]}})
        rc, out, err = self.cbmail()
        self.assertNotEqual(rc, 0, self.out_msg())
        self.assertEqual(mc.summary(out), (False, 2, 0, 1), self.out_msg())
        self.assert_failed_alone(err, groups, ["bounce"], ["ok1", "ok2"])
        self.assertEqual(self.recipients(), ["ok1@example.net", "ok2@example.net"])
        rej = [r for r in self.smtp.rejections() if r["stage"] == "rcpt"]
        self.assertEqual([(r["address"], r["code"]) for r in rej],
                         [("bounce@example.net", 550)])
        self.assertLessEqual(mc.tickets_drawn(self.pg, self.db), 3)
        self.assertEqual(self.failed_states(), {"bounce": "failed"})
        reason = self.pg.scalar(self.db, "SELECT reason FROM mailgen_failed_groups")
        self.assertIn("550", reason)
        # refused for good: its mail is not kept for a repeat (a retry
        # builds it anew, with whatever the operator fixed)
        self.assertEqual(self.pg.scalar(self.db, "SELECT count(*) FROM mailgen_outbox"), "0")

        # the refused group is not tried again until an operator releases it
        rc, out, err = self.cbmail()
        self.assertEqual((rc, mc.summary(out)), (0, (False, 0, 0, 0)), self.out_msg())
        self.assertEqual(len([r for r in self.smtp.rejections() if r["stage"] == "rcpt"]), 1)
        self.pg.psql(self.db, "DELETE FROM mailgen_failed_groups")  # what 'retry all' does
        self.smtp.set_options({})
        rc, out, err = self.cbmail()
        self.assertEqual((rc, mc.summary(out)), (0, (False, 1, 0, 0)), self.out_msg())
        self.assertEqual(self.pending(groups["bounce"][0]), set())

    def wait_retry_due(self):
        """Wait until every deferred group's retry_at has passed."""
        wait_until(lambda: self.pg.scalar(
            self.db, "SELECT count(*) FROM mailgen_failed_groups"
                     " WHERE retry_at > clock_timestamp()") == "0",
            timeout=30, what="deferred groups due")

    def test_recipient_rejected_temporarily_then_accepted(self):
        groups = self.three_groups()
        cfg = self.config(delivery={"group_retry_min_seconds": 2})
        self.smtp.set_options({"reject_rcpt": {"bounce@example.net": [451, "4.3.0 try later"]}})
        rc, out, err = self.cbmail(cfg=cfg)
        self.assertNotEqual(rc, 0, self.out_msg())
        self.assertEqual(mc.summary(out), (False, 2, 0, 1), self.out_msg())
        self.assert_failed_alone(err, groups, ["bounce"], ["ok1", "ok2"])
        self.assertEqual(self.failed_states(), {"bounce": "deferred"})
        self.assertIn("will retry at", err)

        # deferred: not retried before its time, then retried with the same ticket
        self.smtp.set_options({})
        rc, out, err = self.cbmail(cfg=cfg)
        self.assertEqual((rc, mc.summary(out)), (0, (False, 0, 1, 0)), self.out_msg())
        self.wait_retry_due()
        drawn = mc.tickets_drawn(self.pg, self.db)
        rc, out, err = self.cbmail(cfg=cfg)
        self.assertEqual(mc.tickets_drawn(self.pg, self.db), drawn)
        self.assertEqual(self.failed_states(), {})
        self.assertEqual(rc, 0, self.out_msg())
        self.assertEqual(mc.summary(out), (False, 1, 0, 0), self.out_msg())
        self.assertEqual(self.recipients(),
                         ["bounce@example.net", "ok1@example.net", "ok2@example.net"])
        self.assertEqual(len(self.linked()), 3)
        self.assertEqual(self.n_sent_rows(), 3)

    def test_data_rejected_temporarily_then_accepted(self):
        groups = self.three_groups()
        cfg = self.config(delivery={"group_retry_min_seconds": 1})
        self.smtp.set_options({"reject_data": [451, "4.3.0 queue full"]})
        rc, out, err = self.cbmail(cfg=cfg)
        self.assertNotEqual(rc, 0, self.out_msg())
        sim, sent, postponed, errors = mc.summary(out)
        self.assertEqual(sent, 0, self.out_msg())
        self.assertGreaterEqual(errors, 1, self.out_msg())
        self.assertEqual(self.smtp.count(), 0)
        self.assertEqual(self.n_sent_rows(), 0)
        all_dids = set().union(*(d for d, _ in groups.values()))
        self.assertEqual(self.pending(all_dids), all_dids)
        for line in mc.error_lines(err):
            dids, _ = mc.ids_of(line)
            if dids is not None:
                self.assertIn(dids, [d for d, _ in groups.values()])
        # each group was refused at most once, none was recorded
        self.assertLessEqual(mc.tickets_drawn(self.pg, self.db), 3)

        self.smtp.set_options({})
        self.wait_retry_due()
        rc, out, err = self.cbmail(cfg=cfg)
        self.assertEqual(rc, 0, self.out_msg())
        self.assertEqual(mc.summary(out), (False, 3, 0, 0), self.out_msg())
        self.assertEqual(self.recipients(),
                         ["bounce@example.net", "ok1@example.net", "ok2@example.net"])
        self.assertEqual(len(self.linked()), 3)

    def test_smtp_server_down(self):
        per_session = 2
        n_groups = 6
        groups = self.insert_groups([
            ("g%d" % i, make_directive("rcpt%d@example.net" % i, GOOD))
            for i in range(n_groups)])
        cfg = self.config(delivery={"mails_per_session": per_session,
                                    "smtp_timeout_seconds": 10})
        all_dids = set().union(*(d for d, _ in groups.values()))
        self.smtp.stop()
        try:
            for attempt in range(3):
                with self.subTest(attempt=attempt):
                    drawn = mc.tickets_drawn(self.pg, self.db)
                    rc, out, err = self.cbmail(cfg=cfg)
                    self.assertNotEqual(rc, 0, self.out_msg())
                    self.assertTrue(mc.error_lines(err), self.out_msg())
                    self.assertNotIn("Traceback", err)
                    self.assertEqual(self.n_sent_rows(), 0)
                    self.assertEqual(self.pending(all_dids), all_dids)
                    # at most one SMTP session's worth of tickets per run
                    self.assertLessEqual(mc.tickets_drawn(self.pg, self.db) - drawn,
                                         per_session, self.out_msg())
            # the mail built in the first run waits in the outbox and is
            # tried again as it is: no run draws a new number for it
            self.assertLessEqual(mc.tickets_drawn(self.pg, self.db), per_session)
        finally:
            self.smtp.start()
        self.assertEqual(self.smtp.count(), 0)

        rc, out, err = self.cbmail(cfg=cfg)
        self.assertEqual(rc, 0, self.out_msg())
        self.assertEqual(mc.summary(out), (False, n_groups, 0, 0), self.out_msg())
        self.assertEqual(self.recipients(),
                         sorted("rcpt%d@example.net" % i for i in range(n_groups)))
        linked = self.linked()
        self.assertEqual(set(linked), all_dids)
        self.assertEqual(len(set(linked.values())), n_groups, "tickets not unique")
        self.assertEqual(self.n_sent_rows(), n_groups)
        tickets = sorted(mc.ticket_in_subject(mc.parse_mail(raw))
                         for _, raw in self.smtp.messages())
        self.assertEqual(tickets, sorted(linked.values()))


    def test_smtp_server_not_answering_times_out(self):
        # A listening socket whose accept queue is full drops further SYNs:
        # the connect neither succeeds nor fails, like a host behind a
        # firewall that drops packets.  Without a connect time-out of our
        # own, libESMTP would wait for the kernel (about two minutes).
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(lsock.close)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        port = lsock.getsockname()[1]
        fillers = []
        for _ in range(3):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            fillers.append(c)
            self.addCleanup(c.close)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(probe.close)
        probe.settimeout(1.0)
        try:
            probe.connect(("127.0.0.1", port))
            self.skipTest("this kernel completes connects beyond the backlog")
        except socket.timeout:
            pass
        groups = self.insert_groups([("g", make_directive("rcpt@example.net", GOOD))])
        cfg = self.config(delivery={"smtp_timeout_seconds": 2})
        cfg["smtp"]["port"] = port
        t0 = time.monotonic()
        rc, out, err = self.cbmail(cfg=cfg)
        elapsed = time.monotonic() - t0
        self.assertNotEqual(rc, 0, self.out_msg())
        self.assertLess(elapsed, 30, "the connect was not cut after 2 s")
        self.assertIn("timed out", err, self.out_msg())
        self.assertEqual(self.pending(groups["g"][0]), set(groups["g"][0]))

    def test_smtp_server_down_orderly_exit(self):
        self.insert_groups([("g%d" % i, make_directive("rcpt%d@example.net" % i, GOOD))
                            for i in range(3)])
        self.smtp.stop()
        try:
            rc, out, err = self.cbmail()
        finally:
            self.smtp.start()
        self.assertGreater(rc, 0, "not a normal exit" + self.out_msg())
        sim, sent, postponed, errors = mc.summary(out)
        self.assertEqual((sim, sent, postponed), (False, 0, 0), self.out_msg())
        self.assertGreaterEqual(errors, 1, self.out_msg())


class ConfigErrorTest(FailureTestBase):

    def write(self, name, text):
        path = os.path.join(self.tdir.path, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_database_without_our_tables_exits_78(self):
        # a database set up for the original, sql/notifications.sql not run
        self.pg.insert_event(self.db, [make_directive("ok@example.net", GOOD)])
        self.pg.psql(self.db, "DROP TABLE mailgen_outbox;")
        rc, out, err = self.cbmail()
        self.assertEqual(rc, 78, self.out_msg())
        self.assertIn("lacks mailgen-c's tables (mailgen_outbox, mailgen_failed_groups,"
                      " mailgen_dropped_directives): run sql/notifications.sql", err)
        self.assertEqual(self.smtp.count(), 0)

    def test_broken_config_exits_78_and_names_file_and_key(self):
        self.pg.insert_event(self.db, [make_directive("ok@example.net", GOOD)])
        base = self.config()
        before = mc.db_snapshot(self.pg, self.db)

        def variant(change):
            c = copy.deepcopy(base)
            change(c)
            return json.dumps(c, indent=1)

        def no_openpgp(c):
            del c["openpgp"]

        cases = [
            ("not-json.conf", json.dumps(base)[:-10], ["JSON"]),
            ("garbage.conf", "this is not JSON at all\n", ["JSON"]),
            ("port-string.conf",
             variant(lambda c: c["smtp"].__setitem__("port", "twenty-five")), ["smtp.port"]),
            ("port-bool.conf", variant(lambda c: c["smtp"].__setitem__("port", True)),
             ["smtp.port"]),
            ("port-range.conf", variant(lambda c: c["smtp"].__setitem__("port", 70000)),
             ["smtp.port"]),
            ("no-openpgp.conf", variant(no_openpgp), ["openpgp"]),
            ("sign-bool.conf",
             variant(lambda c: c["openpgp"].__setitem__("always_sign", "yes")),
             ["openpgp.always_sign"]),
        ]
        for name, text, keys in cases:
            with self.subTest(config=name):
                path = self.write(name, text)
                rc, out, err = self.cbmail(cfg=path)
                self.assertEqual(rc, 78, self.out_msg())
                self.assertIn(path, err, "message does not name the file" + self.out_msg())
                for k in keys:
                    self.assertIn(k, err, self.out_msg())
                self.assertTrue(mc.error_lines(err), self.out_msg())
                self.assertNotIn("Traceback", err)
                self.assertEqual(len(err.strip().splitlines()), 1, self.out_msg())
                self.assertEqual(self.smtp.count(), 0)
                self.assertEqual(mc.db_snapshot(self.pg, self.db), before)

        # a config file that does not exist
        missing = os.path.join(self.tdir.path, "missing.conf")
        rc, out, err = self.cbmail(cfg=missing)
        self.assertEqual(rc, 78, self.out_msg())
        self.assertIn(missing, err)

        # a sender that is no address: the key is named
        path = self.write("sender.conf", variant(lambda c: c.__setitem__("sender",
                                                                         "not an address")))
        rc, out, err = self.cbmail(cfg=path)
        self.assertEqual(rc, 78, self.out_msg())
        self.assertIn("sender", err)
        self.assertEqual(self.smtp.count(), 0)
        self.assertEqual(mc.db_snapshot(self.pg, self.db), before)

        # and the good config still works
        rc, out, err = self.cbmail(cfg=base)
        self.assertEqual(rc, 0, self.out_msg())
        self.assertEqual(self.recipients(), ["ok@example.net"])


if __name__ == "__main__":
    run_tests()
