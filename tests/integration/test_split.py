#!/usr/bin/python3
"""A group larger than delivery.max_events_per_mail becomes several mails.

Real PostgreSQL, SMTP sink and gpg key (harness.py).  A group of 2,500
events with a cap of 1,000 must go out as three signed mails with three
tickets, parts of 1,000, 1,000 and 500 directives in directive id order,
whose CSV rows together are exactly the 2,500 events; every directive is
recorded with the ticket of the mail that carried its event, and
${mail_part}/${mail_parts} say "1 of 3" .. "3 of 3" ("1 of 1" for the
other groups, which are delivered as usual).  The same through mailgend,
whose sessions must release every advisory lock level they took.  A part
still larger than delivery.max_mail_bytes fails with an error naming the
key, and nothing of it is sent or recorded.  Finally a group of 200,000
events with the default cap is delivered by intelmqcbmail within the time
budget and with bounded memory (its max RSS, from wait4()).

Environment: see harness.py (MG_BUILD_DIR, MG_TEST_WRAPPER, MG_KEEP_TMP).
"""

import collections
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (GpgHome, Mailgend, PgCluster, SmtpSink, TempDir,  # noqa: E402
                     make_config, make_directive, run_cbmail, run_tests, sql_literal,
                     wait_until, write_config)
import mailcheck as mc  # noqa: E402

BEGIN, END = "--- events ---", "--- end ---"
TEMPLATE = ("Report ${ticket_number} part ${mail_part} of ${mail_parts} for AS${source.asn}\n"
            "\n"
            "Ticket ${ticket_number}, mail ${mail_part}/${mail_parts}\n"
            + BEGIN + "\n"
            "${events_as_csv}\n"
            + END + "\n")
SUBJECT_RE = re.compile(r"^Report (\d{8}-\d{8}) part (\d+) of (\d+) for AS64496$")

BIG = "big@example.net"
SMALL = ["small1@example.net", "small2@example.net"]
# Measured on 2 cores: about 34 MiB with the default cap (20 mails of
# 10,000 events), about 104 MiB when the 200,000 events are loaded and
# rendered as one mail.  The bound sits between, with room for other builds.
RSS_LIMIT_KB = 72 * 1024


def sanitized_build():
    """True when the binaries were built with sanitizers (their RSS means little)."""
    try:
        with open(os.path.join(harness.BUILD_DIR, "CMakeCache.txt")) as f:
            return re.search(r"^MG_SANITIZE:STRING=\S", f.read(), re.M) is not None
    except OSError:
        return False


class SplitTest(unittest.TestCase):
    pg = gpg = smtp = tdir = None

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.gpg = GpgHome()
        cls.smtp = SmtpSink()
        cls.tdir = TempDir("mgsplit")
        with open(os.path.join(cls.tdir.path, "split.txt"), "w") as f:
            f.write(TEMPLATE)

    @classmethod
    def tearDownClass(cls):
        for obj in (cls.smtp, cls.gpg, cls.pg, cls.tdir):
            if obj is not None:
                obj.cleanup()

    def setUp(self):
        self.smtp.clear()
        self.db = self.pg.create_db("sp_" + self._testMethodName[5:40].lower())

    def tearDown(self):
        self.pg.drop_db(self.db)

    # ---------------------------------------------------------------- helpers

    def config(self, delivery=None, **kw):
        return make_config(pg=self.pg, db=self.db, smtp=self.smtp, gpg=kw.pop("gpg", self.gpg),
                           template_dir=self.tdir.path, sender="CERT <cert@example.org>",
                           delivery=delivery or {}, **kw)

    def insert_group(self, recipient, n, first_ip):
        """n events in one statement, each with one directive of the same group;
        event k (1-based) has source.ip 10.0.0.0 + first_ip + k."""
        directive = make_directive(recipient_address=recipient, template_name="split.txt",
                                   event_data_format="csv_inline")
        sql = ("INSERT INTO events (\"source.ip\", \"source.asn\", \"source.port\","
               " \"protocol.transport\", \"time.source\", \"classification.identifier\","
               " \"feed.name\", extra)"
               " SELECT '10.0.0.0'::inet + (%d + g), 64496, 53, 'udp',"
               " '2026-11-26 05:00:00+00', 'open-dns', 'Open-DNS',"
               " jsonb_build_object('certbund', jsonb_build_object('source_directives',"
               " %s::jsonb))"
               " FROM generate_series(1, %d) AS g;"
               % (first_ip, sql_literal(json.dumps([directive])), n))
        self.pg.psql(self.db, sql, timeout=300)

    def insert_group_direct(self, recipient, n):
        """Like insert_group(recipient, n, 0), but faster for large n: the
        events without directives, then their directives in one INSERT (the
        trigger would call a function per event)."""
        sql = ("BEGIN;"
               "INSERT INTO events (\"source.ip\", \"source.asn\", \"source.port\","
               " \"protocol.transport\", \"time.source\", \"classification.identifier\","
               " \"feed.name\", extra)"
               " SELECT '10.0.0.0'::inet + g, 64496, 53, 'udp', '2026-11-26 05:00:00+00',"
               " 'open-dns', 'Open-DNS', '{}' FROM generate_series(1, %d) AS g;"
               "INSERT INTO directives (events_id, medium, recipient_address, template_name,"
               " notification_format, event_data_format, aggregate_identifier,"
               " notification_interval, endpoint)"
               " SELECT id, 'email', %s, 'split.txt', 'shadowserver', 'csv_inline',"
               " '{{source.asn,64496}}', interval '0 s', 'source' FROM events ORDER BY id;"
               "COMMIT;" % (n, sql_literal(recipient)))
        self.pg.psql(self.db, sql, timeout=300)

    def insert_scenario(self, big):
        self.insert_group(BIG, big, 0)
        self.insert_group(SMALL[0], 1, 1000000)
        self.insert_group(SMALL[1], 3, 2000000)

    def mails(self):
        """[(recipient, ticket, part, parts, [source.ip of each CSV row])]"""
        out = []
        for env, raw in self.smtp.messages():
            msg = mc.parse_mail(raw)
            m = SUBJECT_RE.match(str(msg["Subject"]))
            self.assertIsNotNone(m, "subject %r" % str(msg["Subject"]))
            ticket, part, parts = m.group(1), int(m.group(2)), int(m.group(3))
            if msg.get_content_type() == "multipart/signed":
                ok, detail = self.gpg.verify(*mc.signed_parts(raw))
                self.assertTrue(ok, detail)
                msg = msg.get_payload()[0]
            text = msg.get_content().replace("\r\n", "\n")
            self.assertIn("Ticket %s, mail %d/%d\n" % (ticket, part, parts), text)
            rows = mc.csv_between(text, BEGIN, END)
            self.assertEqual(rows[0], mc.FALLBACK_TITLES)
            out.append((env["rcpt_tos"][0], ticket, part, parts, [r[1] for r in rows[1:]]))
        return out

    def recorded(self):
        """{source.ip: (directive id, ticket or None)} for every directive."""
        rows = self.pg.query(self.db, "SELECT host(e.\"source.ip\"), d.id,"
                             " coalesce(s.intelmq_ticket, '')"
                             "  FROM directives AS d JOIN events AS e ON e.id = d.events_id"
                             "  LEFT JOIN sent AS s ON s.id = d.sent_id")
        return {ip: (int(did), t or None) for ip, did, t in rows}

    @staticmethod
    def ips(first_ip, n):
        base = 10 << 24
        return ["%d.%d.%d.%d" % ((base + first_ip + k) >> 24, ((base + first_ip + k) >> 16) & 255,
                                 ((base + first_ip + k) >> 8) & 255, (base + first_ip + k) & 255)
                for k in range(1, n + 1)]

    def check_split_delivery(self, big, cap):
        """The mails and the database after delivering insert_scenario(big) with cap."""
        n_parts = (big + cap - 1) // cap
        mails = self.mails()
        by_rcpt = collections.defaultdict(list)
        for m in mails:
            by_rcpt[m[0]].append(m)
        self.assertEqual(sorted(by_rcpt), sorted([BIG] + SMALL))
        # the other groups: one mail each, "1 of 1"
        for rcpt, first_ip, n in ((SMALL[0], 1000000, 1), (SMALL[1], 2000000, 3)):
            self.assertEqual(len(by_rcpt[rcpt]), 1)
            _, _, part, parts, ips = by_rcpt[rcpt][0]
            self.assertEqual((part, parts), (1, 1))
            self.assertEqual(sorted(ips), sorted(self.ips(first_ip, n)))
        # the big group: n_parts mails, distinct tickets, parts 1..n
        big_mails = sorted(by_rcpt[BIG], key=lambda m: m[2])
        self.assertEqual(len(big_mails), n_parts)
        self.assertEqual([m[2] for m in big_mails], list(range(1, n_parts + 1)))
        self.assertEqual({m[3] for m in big_mails}, {n_parts})
        self.assertEqual(len({m[1] for m in big_mails}), n_parts, "tickets not distinct")
        all_ips = [ip for m in big_mails for ip in m[4]]
        self.assertEqual(len(all_ips), big)
        self.assertEqual(len(set(all_ips)), big, "an event is in two mails")
        self.assertEqual(set(all_ips), set(self.ips(0, big)))
        ticket_of_ip = {ip: m[1] for m in big_mails for ip in m[4]}
        part_of_ticket = {m[1]: m[2] for m in big_mails}
        # every directive recorded with the ticket of the mail that carried it,
        # and the parts cut in directive id order
        rec = self.recorded()
        self.assertEqual(len(rec), big + 4)
        for ip, (_, ticket) in rec.items():
            self.assertIsNotNone(ticket, "directive of %s not recorded" % ip)
            if ip in ticket_of_ip:
                self.assertEqual(ticket, ticket_of_ip[ip], ip)
        by_id = sorted((did, ticket) for ip, (did, ticket) in rec.items() if ip in ticket_of_ip)
        for k, (did, ticket) in enumerate(by_id):
            self.assertEqual(part_of_ticket[ticket], k // cap + 1, "directive %d" % did)
        self.assertEqual(self.pg.scalar(self.db, "SELECT count(*) FROM sent"), str(n_parts + 2))

    def run_cbmail_rusage(self, cfg, timeout):
        """intelmqcbmail --all; returns (rc, stdout, stderr, max RSS in KiB) from wait4()."""
        path = write_config(cfg)
        home = TempDir("mghome")
        try:
            env = harness._clean_env({"HOME": home.path})
            with open(os.path.join(home.path, "out"), "w+") as out, \
                    open(os.path.join(home.path, "err"), "w+") as err:
                proc = subprocess.Popen(harness.cbmail_command(["--all"], path),
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        env=env)
                killer = threading.Timer(timeout, proc.kill)
                killer.start()
                try:
                    _, status, ru = os.wait4(proc.pid, 0)
                finally:
                    killer.cancel()
                if os.WIFSIGNALED(status):
                    self.fail("intelmqcbmail killed (signal %d), time limit %d s"
                              % (os.WTERMSIG(status), timeout))
                proc.returncode = os.waitstatus_to_exitcode(status)
                out.seek(0)
                err.seek(0)
                return proc.returncode, out.read(), err.read(), ru.ru_maxrss
        finally:
            home.cleanup()

    # ------------------------------------------------------------------ tests

    def test_cbmail_splits_a_big_group(self):
        self.insert_scenario(2500)
        rc, out, err = run_cbmail(["--all"], self.config({"max_events_per_mail": 1000}))
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(mc.summary(out), (False, 5, 0, 0), out + err)
        self.check_split_delivery(2500, 1000)
        self.assertRegex(err, r"sent mail to 'big@example.net' with ticket \d{8}-\d{8}"
                              r" \(500 events \(part 3 of 3\)\)")

    def test_daemon_splits_a_big_group(self):
        self.insert_scenario(2500)
        # two mails per session: the three parts take two sessions of one batch
        cfg = self.config({"max_events_per_mail": 1000, "mails_per_session": 2},
                          daemon={"debounce_quiet_ms": 100, "rescan_interval_seconds": 3600,
                                  "workers": 2})
        with Mailgend(cfg) as d:
            d.wait_ready(timeout=60)
            self.smtp.wait_for(5, timeout=60)
            wait_until(lambda: self.pg.scalar(
                self.db, "SELECT count(*) FROM directives WHERE sent_id IS NULL") == "0",
                timeout=30, what="every directive recorded")
            self.check_split_delivery(2500, 1000)
            # every claim level released: the workers' sessions hold no advisory lock
            wait_until(lambda: self.pg.scalar(
                self.db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == "0",
                timeout=30, what="advisory locks released")
            self.assertEqual(d.status()["sent"], 5)
            self.assertEqual(d.stop(), 0)
        self.assertEqual(self.smtp.count(), 5)

    def test_outbox_mail_is_sent_once_when_the_parts_change(self):
        # The whole group's mail is deferred (451) and waits in the outbox;
        # then the operator lowers the cap, so three parts overlap that one
        # mail.  It goes out once, as it was, and records every directive.
        self.insert_scenario(2500)
        self.smtp.set_options({"reject_rcpt": {BIG: [451, "4.3.0 try later"]}})
        cfg = self.config({"max_events_per_mail": 10000, "group_retry_min_seconds": 1})
        rc, out, err = run_cbmail(["--all"], cfg)
        self.assertEqual(rc, 1, out + err)
        ticket = self.pg.scalar(self.db, "SELECT intelmq_ticket FROM mailgen_outbox")
        self.assertRegex(ticket, r"^\d{8}-\d{8}$")
        self.smtp.set_options({})
        wait_until(lambda: self.pg.scalar(
            self.db, "SELECT count(*) FROM mailgen_failed_groups"
                     " WHERE retry_at > clock_timestamp()") == "0",
            timeout=30, what="the deferral to end")
        rc, out, err = run_cbmail(["--all"], self.config({"max_events_per_mail": 1000}))
        self.assertEqual(rc, 0, out + err)
        big = [m for m in self.mails() if m[0] == BIG]
        self.assertEqual([(m[1], m[2], m[3]) for m in big], [(ticket, 1, 1)])
        self.assertEqual(sorted(big[0][4]), sorted(self.ips(0, 2500)))
        rec = self.recorded()
        self.assertEqual({t for ip, (did, t) in rec.items() if ip in set(self.ips(0, 2500))},
                         {ticket})
        self.assertEqual(self.pg.scalar(self.db, "SELECT count(*) FROM mailgen_outbox"), "0")

    def test_part_over_max_mail_bytes_fails_without_truncation(self):
        self.insert_scenario(2500)
        # about 60 bytes a row: 2,000 rows do not fit in 64 KiB, 500 do
        cfg = self.config({"max_events_per_mail": 2000, "max_mail_bytes": 65536})
        rc, out, err = run_cbmail(["--all"], cfg)
        self.assertEqual(rc, 1, out + err)
        self.assertEqual(mc.summary(out), (False, 3, 0, 1), out + err)
        errors = [ln for ln in err.splitlines() if "ERROR" in ln]
        self.assertEqual(len(errors), 1, err)
        self.assertIn("group for 'big@example.net' (part 1 of 2) cannot be mailed, group failed"
                      " (not retried until 'mailgenctl retry'; 1 attempts): the mail of 2000"
                      " events would exceed 'delivery.max_mail_bytes' (65536 bytes;"
                      " 'delivery.max_events_per_mail' is 2000): ", errors[0])
        self.assertIn("directive_ids=1,2,3,", errors[0])
        # the other part and the other groups went out; the failed part was
        # neither sent in part nor recorded: its 2,000 directives stay pending
        mails = self.mails()
        self.assertEqual(sorted(m[0] for m in mails), sorted([BIG] + SMALL))
        part2 = [m for m in mails if m[0] == BIG][0]
        self.assertEqual((part2[2], part2[3]), (2, 2))
        self.assertEqual(sorted(part2[4]), sorted(self.ips(0, 2500)[2000:]))
        rec = self.recorded()
        pending = sorted(did for did, ticket in rec.values() if ticket is None)
        self.assertEqual(pending, list(range(1, 2001)))
        # and the group is in the failed state until an operator releases it
        self.assertEqual(self.pg.scalar(self.db, "SELECT state FROM mailgen_failed_groups"
                                                 " WHERE recipient_address = '%s'" % BIG), "failed")

    def test_cbmail_200000_events_default_cap(self):
        n = 200000
        t0 = time.monotonic()
        self.insert_group_direct(BIG, n)
        t_insert = time.monotonic() - t0
        rc, out, err, maxrss = self.run_cbmail_rusage(self.config(gpg=None, always_sign=False),
                                                      timeout=120)
        t_run = time.monotonic() - t0 - t_insert
        print("insert %.1f s, intelmqcbmail %.1f s, max RSS %d KiB"
              % (t_insert, t_run, maxrss), file=sys.stderr)
        self.assertEqual(rc, 0, out + err[-3000:])
        self.assertEqual(mc.summary(out), (False, 20, 0, 0), out)
        mails = self.mails()
        self.assertEqual(sorted(m[2] for m in mails), list(range(1, 21)))
        self.assertEqual({m[3] for m in mails}, {20})
        self.assertEqual({len(m[4]) for m in mails}, {10000})
        self.assertEqual(len({ip for m in mails for ip in m[4]}), n)
        self.assertEqual(self.pg.scalar(
            self.db, "SELECT count(*) FROM directives WHERE sent_id IS NULL"), "0")
        self.assertEqual(self.pg.scalar(
            self.db, "SELECT count(DISTINCT sent_id) FROM directives"), "20")
        if os.environ.get("MG_TEST_WRAPPER") or sanitized_build():
            print("max RSS not checked (wrapper or sanitizers)", file=sys.stderr)
        else:
            self.assertLess(maxrss, RSS_LIMIT_KB, "intelmqcbmail used %d KiB" % maxrss)


if __name__ == "__main__":
    run_tests()
