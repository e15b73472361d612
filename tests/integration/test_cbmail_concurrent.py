#!/usr/bin/python3
"""Several intelmqcbmail processes on one database at the same time.

PostgreSQL is the only coordinator: whatever the interleaving, every group
is mailed exactly once in total, every directive is linked to the one sent
row of its group, and ticket numbers are unique (also when the processes
all restart the ticket sequence for a new day at the same moment).
"""

import collections
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (GpgHome, PgCluster, SmtpSink, TempDir, make_config,  # noqa: E402
                     make_directive, run_tests, write_config)
import mailcheck as mc  # noqa: E402

TEMPLATE = ("Report ${ticket_number} for AS${source.asn}\n"
            "\n"
            "Ticket ${ticket_number}\n"
            "${events_as_csv}\n")

N_GROUPS = 60
EVENTS_PER_GROUP = 3


class ConcurrentTest(unittest.TestCase):
    pg = gpg = smtp = tdir = None

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.gpg = GpgHome()
        cls.smtp = SmtpSink()
        cls.tdir = TempDir("mgtpl")
        with open(os.path.join(cls.tdir.path, "report.txt"), "w") as f:
            f.write(TEMPLATE)

    @classmethod
    def tearDownClass(cls):
        for obj in (cls.smtp, cls.gpg, cls.pg, cls.tdir):
            if obj is not None:
                obj.cleanup()

    def setUp(self):
        self.smtp.clear()
        self.db = self.pg.create_db("c_" + self._testMethodName[5:40].lower())

    def tearDown(self):
        self.pg.drop_db(self.db)

    def config_path(self, **kw):
        cfg = make_config(pg=self.pg, db=self.db, gpg=self.gpg, smtp=self.smtp,
                          template_dir=self.tdir.path, sender="cert@example.org",
                          logging_level="INFO", **kw)
        return write_config(cfg, directory=self.tdir.path, name=self.db + ".conf")

    def run_parallel(self, n, config, args=("--all",), timeout=180):
        """Start n intelmqcbmail processes at once; [(rc, stdout, stderr)]."""
        home = TempDir("mghome")
        env = harness._clean_env({"HOME": home.path})
        procs = []
        try:
            for _ in range(n):
                procs.append(subprocess.Popen(harness.cbmail_command(list(args), config),
                                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True, env=env))
            results = []
            for p in procs:
                out, err = p.communicate(timeout=timeout)
                results.append((p.returncode, out, err))
            return results
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            home.cleanup()

    def describe(self, results):
        return "".join("\n--- process %d: exit %s\n%s%s" % (i, rc, out, err[-3000:])
                       for i, (rc, out, err) in enumerate(results))

    def insert_round(self, tag, n_groups=N_GROUPS, per_group=EVENTS_PER_GROUP):
        """n_groups groups (30 recipients x 2 ASNs for 60) of per_group events each.
        Returns {(recipient, asn): set of directive ids}."""
        events, keys = [], []
        for i in range(n_groups):
            rcpt = "%s-%d@example.net" % (tag, i // 2)
            asn = 64496 + i % 2
            d = make_directive(rcpt, "report.txt", aggregate_identifier={"source.asn": asn})
            for k in range(per_group):
                events.append({"directives": [d],
                               "fields": {"source.asn": asn,
                                          "source.ip": "10.%d.%d.%d" % (i // 200, i % 200, k)}})
                keys.append((rcpt, str(asn)))
        ids = self.pg.insert_events(self.db, events)
        key_of_event = dict(zip(ids, keys))
        groups = collections.defaultdict(set)
        for did, eid in self.pg.query(self.db, "SELECT id, events_id FROM directives"):
            if int(eid) in key_of_event:
                groups[key_of_event[int(eid)]].add(int(did))
        self.assertEqual(len(groups), n_groups)
        return groups

    def check_round(self, groups, results, msgs):
        """Every group mailed exactly once, every directive linked to its
        group's one sent row, sums add up, no errors."""
        info = self.describe(results)
        for rc, out, err in results:
            self.assertEqual(rc, 0, info)
            self.assertEqual(mc.error_lines(err), [], info)
            self.assertNotIn("duplicate key", err)
        total_sent = sum(mc.summary(out)[1] for _, out, _ in results)
        self.assertEqual(total_sent, len(groups), info)

        mails_per_key = collections.Counter()
        subject_tickets = []
        for env, raw in msgs:
            msg = mc.parse_mail(raw)
            ticket = mc.ticket_in_subject(msg)
            subject_tickets.append(ticket)
            asn = str(msg["Subject"]).rsplit("AS", 1)[1]
            mails_per_key[(env["rcpt_tos"][0], asn)] += 1
        dupes = {k: c for k, c in mails_per_key.items() if c != 1}
        self.assertEqual(dupes, {}, "groups mailed more than once" + info)
        self.assertEqual(set(mails_per_key), set(groups), info)
        self.assertEqual(len(set(subject_tickets)), len(subject_tickets), "duplicate tickets")

        rows = self.pg.query(self.db, "SELECT d.id, s.id, s.intelmq_ticket FROM directives d"
                             " LEFT JOIN sent s ON s.id = d.sent_id")
        link = {int(d): (s, t) for d, s, t in rows}
        tickets_of_group = {}
        for key, dids in groups.items():
            sent_rows = {link[d] for d in dids}
            self.assertEqual(len(sent_rows), 1, "group %s linked to %s" % (key, sent_rows))
            (sid, ticket), = sent_rows
            self.assertNotEqual(sid, "", "group %s not linked" % (key,))
            tickets_of_group[key] = ticket
        self.assertEqual(sorted(tickets_of_group.values()), sorted(subject_tickets))
        return subject_tickets

    # ------------------------------------------------------------------ tests

    def test_two_processes_mail_each_group_once(self):
        config = self.config_path()
        all_tickets = []
        for rnd in range(3):
            with self.subTest(round=rnd):
                groups = self.insert_round("r%d" % rnd)
                seen = self.smtp.count()
                results = self.run_parallel(2, config)
                msgs = self.smtp.messages()[seen:]
                self.assertEqual(len(msgs), N_GROUPS, self.describe(results))
                all_tickets += self.check_round(groups, results, msgs)
        self.assertEqual(len(set(all_tickets)), 3 * N_GROUPS)
        self.assertEqual(self.pg.scalar(self.db, "SELECT count(*) FROM directives"
                                        " WHERE sent_id IS NULL"), "0")
        self.assertEqual(int(self.pg.scalar(self.db, "SELECT count(*) FROM sent")), 3 * N_GROUPS)
        # nothing is left for a further run
        results = self.run_parallel(2, config)
        self.assertEqual([mc.summary(out)[1] for _, out, _ in results], [0, 0])
        self.assertEqual(self.smtp.count(), 3 * N_GROUPS)

    def test_many_processes_draw_unique_tickets_across_a_day_change(self):
        # the sequence still holds numbers of an earlier day
        self.pg.psql(self.db, "UPDATE ticket_day SET initialized_for_day = current_date - 7;"
                              "SELECT setval('intelmq_ticket_seq', 10000500);")
        groups = self.insert_round("t", n_groups=N_GROUPS, per_group=1)
        config = self.config_path(delivery={"mails_per_session": 3})
        day = mc.db_today(self.pg, self.db)
        results = self.run_parallel(6, config)
        day_after = mc.db_today(self.pg, self.db)
        msgs = self.smtp.messages()
        self.assertEqual(len(msgs), N_GROUPS, self.describe(results))
        tickets = self.check_round(groups, results, msgs)
        for t in tickets:
            self.assertRegex(t, r"^\d{8}-\d{8}$")
        if day == day_after:
            # restarted exactly once for today: numbers from MINVALUE on
            self.assertEqual({t[:8] for t in tickets}, {day})
            numbers = sorted(int(t[9:]) for t in tickets)
            self.assertEqual(numbers[0], mc.SEQ_MIN)
            self.assertLessEqual(numbers[-1], mc.SEQ_MIN + 2 * N_GROUPS)
            self.assertEqual(self.pg.scalar(self.db, "SELECT to_char(initialized_for_day,"
                                            " 'YYYYMMDD') FROM ticket_day"), day)


if __name__ == "__main__":
    run_tests()
