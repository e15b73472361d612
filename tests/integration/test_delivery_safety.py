#!/usr/bin/python3
"""Delivery you can trust (issue #5): mailgend killed with SIGKILL at random
moments loses nothing and repeats at most the mails in flight, with the same
ticket and Message-Id; an SMTP server stopped mid-run costs no ticket per
attempt; a group the server refuses for good is put into the failed state,
listed by mailgenctl and sent after 'mailgenctl retry' (or dropped).

Real PostgreSQL, aiosmtpd and gpg, as in test_daemon.py (whose fixtures and
helpers this file reuses).
"""
import collections
import os
import random
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_daemon as td  # noqa: E402
from harness import wait_until  # noqa: E402
import mailcheck as mc  # noqa: E402


def setUpModule():
    td.setUpModule()


def tearDownModule():
    td.tearDownModule()


class CrashTest(td.DaemonTestBase):
    WORKERS = 2

    def message_ids(self):
        """[(Message-Id, ticket, recipient)] of every mail the sink accepted."""
        out = []
        for env, raw in self.smtp.messages():
            info = td.mail_info(env, raw)
            out.append((str(info["msg"]["Message-Id"]), info["ticket"], info["rcpt"]))
        return out

    def test_sigkill_at_random_moments_loses_nothing(self):
        n_groups, kills = 1000, 6
        seed = int(os.environ.get("MG_TEST_SEED", time.time()))
        rnd = random.Random(seed)
        cfg = self.config(delivery={"mails_per_session": 8}, logging_level="INFO")
        rcpts = self.insert_groups("k", n_groups)
        for k in range(kills):
            d = self.daemon(cfg, ready=False)
            # a random moment: after some more mails arrived, or right at start
            more = rnd.choice([0, 1, 5, 20, 60, 120])
            start = self.smtp.count()
            if more:
                self.smtp.wait_for(min(start + more, n_groups), timeout=120)
            d.kill()
            d.wait_exit(timeout=30)
        # (not waiting for "ready": its first scan ends only when the last
        # batch is queued, which under a sanitizer takes longer than that wait)
        d = self.daemon(cfg, ready=False)
        self.wait_all_linked(timeout=240)
        self.assertEqual(d.stop(), 0)

        msg = "seed %d (rerun with MG_TEST_SEED=%d)" % (seed, seed)
        mails = self.message_ids()
        linked = dict(td.PG.query(self.db, "SELECT d.recipient_address, s.intelmq_ticket"
                                           " FROM directives d JOIN sent s ON s.id = d.sent_id"))
        # nothing lost: every directive is linked to a sent row, each group once
        self.assertEqual(self.pending(), 0, msg)
        self.assertEqual(set(linked), set(rcpts), msg)
        self.assertEqual(len(set(linked.values())), n_groups, "tickets not unique; " + msg)
        # every recipient got its mail; repeats are exact copies of the first
        by_rcpt = collections.defaultdict(set)
        for mid, ticket, rcpt in mails:
            by_rcpt[rcpt].add((mid, ticket))
        self.assertEqual(set(by_rcpt), set(rcpts), msg)
        for rcpt, copies in by_rcpt.items():
            self.assertEqual(len(copies), 1, "%s got different mails %s; %s"
                             % (rcpt, copies, msg))
            ((mid, ticket),) = copies
            self.assertEqual(ticket, linked[rcpt], msg)
            self.assertIn(ticket, mid, msg)
        repeats = len(mails) - n_groups
        # at most the mail in flight per worker and kill
        self.assertLessEqual(repeats, kills * self.WORKERS, msg)
        # a number is spent without a mail only when the process dies
        # between drawing it and storing the mail: at most one per worker and kill
        drawn = mc.tickets_drawn(td.PG, self.db)
        self.assertGreaterEqual(drawn, n_groups, msg)
        self.assertLessEqual(drawn - n_groups, kills * self.WORKERS, msg)
        self.assertEqual(td.PG.scalar(self.db, "SELECT count(*) FROM mailgen_outbox"), "0")
        print("crash test: %d kills, %d repeated mails (%s)" % (kills, repeats, msg),
              file=sys.stderr)

    def test_smtp_stopped_mid_run_and_restarted(self):
        n_groups = 200
        cfg = self.config(delivery={"mails_per_session": 8}, logging_level="INFO",
                          daemon={"retry_min_seconds": 1, "retry_max_seconds": 4})
        d = self.daemon(cfg)
        rcpts = self.insert_groups("s", n_groups)
        self.smtp.wait_for(20, timeout=60)
        self.smtp.stop()
        # the daemon backs off with growing delays while the server is down
        d.wait_log(r"retrying in \d+ s", count=3, timeout=60)
        waits = [int(x) for x in re.findall(r"retrying in (\d+) s", d.log())]
        self.assertEqual(waits[:3], sorted(waits[:3]), d.log_tail())
        self.assertLess(waits[0], waits[2], d.log_tail())
        drawn_while_down = mc.tickets_drawn(td.PG, self.db)
        d.wait_log(r"retrying in \d+ s", count=4, timeout=60)
        # probing costs no ticket: the probe mail waits in the outbox
        self.assertEqual(mc.tickets_drawn(td.PG, self.db), drawn_while_down)
        self.smtp.start()
        self.wait_all_linked(timeout=120)
        infos = self.infos()
        per_rcpt = collections.Counter(i["rcpt"] for i in infos)
        self.assertEqual(set(per_rcpt), set(rcpts))
        # a repeat is only possible for a mail cut at the moment of the stop
        repeated = {r: c for r, c in per_rcpt.items() if c > 1}
        self.assertLessEqual(sum(repeated.values()) - len(repeated), self.WORKERS)
        self.assertEqual(mc.tickets_drawn(td.PG, self.db), n_groups)
        self.assertEqual(d.stop(), 0)


class FailedGroupTest(td.DaemonTestBase):
    WORKERS = 2

    def sink_options(self):
        return {"reject_rcpt": {"bounce-1@example.net": [550, "5.1.1 no such user"],
                                "slow-1@example.net": [451, "4.3.0 try later"]}}

    def failed_rows(self):
        return td.PG.query(self.db, "SELECT id, recipient_address, state, attempts"
                                    " FROM mailgen_failed_groups ORDER BY id")

    def test_refused_group_is_failed_listed_and_retried(self):
        cfg = self.config(delivery={"group_retry_min_seconds": 1,
                                    "group_retry_max_seconds": 2},
                          logging_level="INFO")
        d = self.daemon(cfg)
        self.insert_groups("ok", 3)
        self.insert_groups("bounce", 2)
        self.insert_groups("slow", 2)
        # ok-0..2, bounce-0, slow-0 go out; bounce-1 fails, slow-1 is deferred
        self.smtp.wait_for(5, timeout=60)
        wait_until(lambda: len(self.failed_rows()) == 2, timeout=30, what="two failure rows")
        d.wait_log(r"group failed \(not retried until 'mailgenctl retry'", timeout=30)
        states = {r[1]: r[2] for r in self.failed_rows()}
        self.assertEqual(states["bounce-1@example.net"], "failed")
        # the deferred one is retried by the due timer, with growing attempts
        wait_until(lambda: any(r[1] == "slow-1@example.net" and int(r[3]) >= 3
                               for r in self.failed_rows()),
                   timeout=30, what="three attempts of the deferred group")
        self.assertEqual(len([r for r in self.smtp.rejections()
                              if r["address"] == "bounce-1@example.net"]), 1,
                         "a failed group was retried")
        st = d.status()
        self.assertEqual(st["failed_groups"], 1)
        self.assertEqual(st["deferred_groups"], 1)

        rc, out, err = d.ctl("failed")
        self.assertEqual(rc, 0, err)
        self.assertIn("1 failed, 1 deferred", out)
        fid = next(r[0] for r in self.failed_rows() if r[1] == "bounce-1@example.net")
        self.assertRegex(out, r"(?m)^%s  failed  bounce-1@example.net .*\n.*\n    .*550" % fid)
        rc, out, err = d.ctl("retry", "999999")
        self.assertNotEqual(rc, 0)
        self.assertIn("no failed group with id 999999", err)

        # the operator fixes the mailbox and releases the group
        self.smtp.set_options({})
        rc, out, err = d.ctl("retry", fid)
        self.assertEqual(rc, 0, err)
        self.assertIn("1 failed groups released", out)
        self.wait_all_linked(timeout=30)
        self.assertEqual(collections.Counter(i["rcpt"] for i in self.infos())
                         ["bounce-1@example.net"], 1)
        wait_until(lambda: self.failed_rows() == [], timeout=30, what="failure rows gone")
        d.wait_log(r"1 failed groups released for retry \(id %s, asked by uid" % fid)
        self.assertEqual(d.stop(), 0)

    def test_dropped_group_is_never_mailed(self):
        d = self.daemon(self.config(logging_level="INFO"))
        self.insert_groups("bounce", 2)
        wait_until(lambda: len(self.failed_rows()) == 1, timeout=60, what="failure row")
        fid = self.failed_rows()[0][0]
        self.smtp.set_options({})
        rc, out, err = d.ctl("drop", fid)
        self.assertEqual(rc, 0, err)
        self.assertIn("failed group %s dropped: 1 directives will never be mailed" % fid, out)
        rc, out, err = d.ctl("drop", fid)
        self.assertNotEqual(rc, 0)
        self.assertIn("no failed group with id %s" % fid, err)
        d.wait_log(r"failed group %s dropped by uid \d+: 1 directives will never be mailed"
                   % fid)
        self.assertEqual(self.failed_rows(), [])
        dropped = td.PG.scalar(self.db, "SELECT count(*) FROM mailgen_dropped_directives")
        self.assertEqual(dropped, "1")
        # a new scan does not bring it back
        rc, out, err = d.ctl("flush")
        d.wait_status(lambda s: s["pending_groups"] == 0 and s["state"] == "idle",
                      what="idle after the flush")
        self.assertEqual(collections.Counter(i["rcpt"] for i in self.infos())
                         ["bounce-1@example.net"], 0)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
