#!/usr/bin/python3
"""mailgend end to end: NOTIFY-driven sending, timers, control, failures.

Real PostgreSQL (with sql/notifications.sql, whose trigger notifies on every
INSERT into directives), a real SMTP server (aiosmtpd sink) and a real gpg
key, all started by harness.py; the daemon is harness.Mailgend, controlled
with the real mailgenctl.

Nothing here calls intelmqcbmail or "mailgenctl flush" unless the test is
about that: mails must go out because of a notification, the due timer or
the retry timer.  The safety rescan is set to an hour so it cannot hide a
missing wake-up.  Every wait is a condition wait; the few "nothing happens
for N s" checks poll for the whole period.

Environment: see harness.py (MG_BUILD_DIR, MG_TEST_WRAPPER, MG_KEEP_TMP).
"""

import collections
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (GpgHome, Mailgend, PgCluster, SmtpSink, TempDir,  # noqa: E402
                     make_config, make_directive, run_tests, wait_until, write_config)
import mailcheck as mc  # noqa: E402

BEGIN, END = "--- events ---", "--- end ---"
TEMPLATE = ("Report ${ticket_number} for AS${source.asn}\n"
            "\n"
            + BEGIN + "\n"
            "${events_as_csv}\n"
            + END + "\n"
            "Ticket: ${ticket_number}\n")
SENDER = "CERT Example <cert@example.org>"
STATUS_KEYS = {
    "state", "started_at", "now", "uptime_seconds", "workers_busy", "workers_total",
    "pending_groups", "pending_directives", "next_due", "last_scan", "sent", "postponed",
    "failed", "failed_groups", "deferred_groups", "paused", "db_connected", "last_error",
}

PG = GPG = TPL = None
_db_counter = itertools.count(1)


def setUpModule():
    global PG, GPG, TPL
    PG = PgCluster()
    GPG = GpgHome()
    TPL = TempDir("mgtpl")
    with open(os.path.join(TPL.path, "report.txt"), "w") as f:
        f.write(TEMPLATE)


def tearDownModule():
    for obj in (TPL, GPG, PG):
        if obj is not None:
            obj.cleanup()


def mail_info(env, raw):
    """What a test needs of one accepted mail."""
    msg = mc.parse_mail(raw)
    subject = str(msg["Subject"])
    m = re.fullmatch(r"Report (\d{8}-\d{8}) for AS(\d+)", subject.strip())
    if not m:
        raise AssertionError("unexpected Subject %r" % subject)
    part = msg.get_payload()[0] if msg.is_multipart() else msg
    text = part.get_content().replace("\r\n", "\n")
    rows = mc.csv_between(text, BEGIN, END)
    return {"ticket": m.group(1), "asn": m.group(2), "rcpt": env["rcpt_tos"][0],
            "rows": rows[1:], "time": env["time"], "from": mc.from_address(msg)[1],
            "msg": msg, "raw": raw}


class DaemonTestBase(unittest.TestCase):
    """A fresh database and SMTP sink per test; daemons via self.daemon()."""

    WORKERS = 2

    def setUp(self):
        name = "d%d_%s" % (next(_db_counter), self._testMethodName[5:35].lower())
        self.db = PG.create_db(name)
        self.addCleanup(PG.drop_db, self.db)
        self.smtp = SmtpSink(options=self.sink_options())
        self.addCleanup(self.smtp.cleanup)
        self.daemons = []

    def sink_options(self):
        return {}

    def tearDown(self):
        # Stop the daemons before the database is dropped (cleanups run
        # after tearDown).  Every daemon still running must stop cleanly, and
        # no log may hold a sanitizer report (ASan/UBSan builds).
        problems = []
        for d in self.daemons:
            try:
                if d.running:
                    rc = d.stop(timeout=60)
                    if rc != 0:
                        problems.append("mailgend exited with %s on SIGTERM" % rc)
                log = d.log()
                for word in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
                    if word in log:
                        problems.append("%s in the log of mailgend:\n%s" % (word, log[-6000:]))
            finally:
                d.cleanup()
        self.assertEqual(problems, [])

    # ---------------------------------------------------------------- helpers

    def config(self, daemon=None, **kw):
        dm = {"debounce_quiet_ms": 200, "debounce_max_ms": 2000,
              "rescan_interval_seconds": 3600, "workers": self.WORKERS,
              "retry_min_seconds": 1, "retry_max_seconds": 4, "db_ping_seconds": 2,
              "shutdown_timeout_seconds": 30,
              "control_socket": "/nonexistent/use-the-s-option.sock"}
        dm.update(daemon or {})
        kw.setdefault("template_dir", TPL.path)
        kw.setdefault("sender", SENDER)
        kw.setdefault("logging_level", "DEBUG")
        return make_config(pg=PG, db=self.db, gpg=GPG, smtp=self.smtp, daemon=dm, **kw)

    def daemon(self, config=None, ready=True, **daemon_opts):
        d = Mailgend(config if config is not None else self.config(daemon=daemon_opts))
        self.daemons.append(d)
        if ready:
            d.wait_ready(timeout=30)
        return d

    def insert_groups(self, tag, n_groups, per_group=1, interval=0):
        """n_groups groups, one recipient each (tag-i@example.net), of
        per_group events; in one transaction.  Returns the recipients."""
        events, rcpts = [], []
        for i in range(n_groups):
            rcpt = "%s-%d@example.net" % (tag, i)
            rcpts.append(rcpt)
            d = make_directive(rcpt, "report.txt", notification_interval=interval)
            for k in range(per_group):
                events.append({"directives": [d],
                               "fields": {"source.ip": "10.%d.%d.%d" % (i // 250, i % 250, k)}})
        PG.insert_events(self.db, events)
        return rcpts

    def one(self, rcpt, n_before, timeout=20):
        """Insert one event for rcpt; wait for its mail (the sink had n_before)."""
        PG.insert_event(self.db, [make_directive(rcpt, "report.txt")])
        msgs = self.smtp.wait_for(n_before + 1, timeout=timeout)
        self.assertEqual(msgs[n_before][0]["rcpt_tos"], [rcpt])
        return msgs

    def pending(self):
        return int(PG.scalar(self.db, "SELECT count(*) FROM directives WHERE sent_id IS NULL"))

    def n_directives(self):
        return int(PG.scalar(self.db, "SELECT count(*) FROM directives"))

    def wait_all_linked(self, timeout=30, daemons=None):
        def done():
            return self.n_directives() > 0 and self.pending() == 0
        try:
            wait_until(done, timeout=timeout, what="every directive to be linked to a sent row")
        except TimeoutError as e:
            logs = "".join("\n--- daemon %d log tail:\n%s" % (i, d.log_tail())
                           for i, d in enumerate(daemons or self.daemons))
            raise AssertionError("%s (%d pending)%s" % (e, self.pending(), logs)) from None

    def sent_tickets(self):
        return [r[0] for r in PG.query(self.db, "SELECT intelmq_ticket FROM sent")]

    def infos(self):
        return [mail_info(env, raw) for env, raw in self.smtp.messages()]

    def check_each_group_once(self, rcpt_events, infos=None):
        """rcpt_events: {recipient: number of events}.  Every directive is
        linked, every recipient got exactly one mail holding all its events,
        tickets are unique, and each directive is linked to the ticket of
        the mail its recipient got.  Returns {recipient: info}."""
        self.assertEqual(self.pending(), 0)
        infos = self.infos() if infos is None else infos
        per_rcpt = collections.Counter(i["rcpt"] for i in infos)
        dupes = {r: c for r, c in per_rcpt.items() if c != 1}
        self.assertEqual(dupes, {}, "recipients mailed more than once")
        self.assertEqual(set(per_rcpt), set(rcpt_events))
        tickets = [i["ticket"] for i in infos]
        self.assertEqual(len(set(tickets)), len(tickets), "duplicate tickets")
        by_rcpt = {i["rcpt"]: i for i in infos}
        for rcpt, n in rcpt_events.items():
            self.assertEqual(len(by_rcpt[rcpt]["rows"]), n, "CSV rows in the mail to " + rcpt)
        links = PG.query(self.db, "SELECT d.id, d.recipient_address, s.intelmq_ticket"
                                  " FROM directives d JOIN sent s ON s.id = d.sent_id")
        self.assertEqual(len(links), self.n_directives())
        for did, rcpt, ticket in links:
            self.assertEqual(ticket, by_rcpt[rcpt]["ticket"],
                             "directive %s of %s linked to the wrong ticket" % (did, rcpt))
        self.assertEqual(sorted(self.sent_tickets()), sorted(tickets))
        return by_rcpt

    def assert_no_mail_for(self, seconds, count=0, what=""):
        """Poll for `seconds`: the sink must keep exactly `count` mails."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.assertEqual(self.smtp.count(), count, "a mail went out " + what)
            time.sleep(0.05)
        self.assertEqual(self.smtp.count(), count, "a mail went out " + what)

    @staticmethod
    def log_lines(d, level):
        return [ln for ln in d.log().splitlines() if ln.startswith("mailgend: %s:" % level)]

    def assert_no_errors(self, d):
        self.assertEqual(self.log_lines(d, "ERROR"), [], d.log_tail())


# ====================================================================== (a)(b)(c)

class NotifyTest(DaemonTestBase):

    def test_insert_is_mailed_without_any_action(self):
        d = self.daemon()
        self.assertEqual(self.smtp.count(), 0)
        # IntelMQ-style: two groups in one transaction, a third one on its own
        rcpts = self.insert_groups("a", 2, per_group=3)
        PG.insert_event(self.db, [make_directive("solo@example.net", "report.txt")],
                        fields={"source.ip": "192.0.2.77"})
        self.smtp.wait_for(3, timeout=20)
        self.wait_all_linked()
        by_rcpt = self.check_each_group_once({rcpts[0]: 3, rcpts[1]: 3, "solo@example.net": 1})
        self.assertEqual(by_rcpt["solo@example.net"]["rows"][0][1], "192.0.2.77")
        # the mails are signed with the configured key
        info = by_rcpt[rcpts[0]]
        self.assertEqual(info["msg"].get_content_type(), "multipart/signed")
        signed, sig = mc.signed_parts(info["raw"])
        ok, detail = GPG.verify(signed, sig)
        self.assertTrue(ok, detail)
        self.assertEqual(info["from"], "cert@example.org")
        st = d.wait_status(lambda s: s["sent"] == 3, what="status sent == 3")
        self.assertEqual(st["failed"], 0)
        self.assertEqual(len(d.wait_log(r"sent mail to '.*' with ticket", count=3)), 3)
        self.assert_no_errors(d)
        self.assertEqual(self.smtp.count(), 3)

    def test_scan_starts_with_small_batches_spread_over_the_workers(self):
        # 10 due groups, 2 workers: a scan starts with batches of 4, one
        # per worker, then 8 (4 + 4 + 2 here), not one session of 10
        self.daemon()
        self.insert_groups("spread", 10)
        self.smtp.wait_for(10, timeout=20)
        self.wait_all_linked()
        sessions = collections.Counter(tuple(env["peer"]) for env, _ in self.smtp.messages())
        self.assertEqual(sum(sessions.values()), 10)
        self.assertLessEqual(max(sessions.values()), 4, sessions)
        self.assertGreaterEqual(len(sessions), 3, sessions)

    def test_burst_of_single_inserts_is_debounced(self):
        quiet = 1.0
        d = self.daemon(debounce_quiet_ms=int(quiet * 1000), debounce_max_ms=600000)
        n, n_rcpt = 1000, 5
        # one psql session, autocommit: 1000 transactions, 1000 notifications,
        # a few ms apart, so that the burst lasts longer than the quiet period
        sql = "".join(
            PG.event_insert_sql([make_directive("burst-%d@example.net" % (i % n_rcpt),
                                                "report.txt")],
                                fields={"source.ip": "10.1.%d.%d" % (i // 250, i % 250)},
                                returning=False)
            + "SELECT pg_sleep(0.002);\n"
            for i in range(n))
        t_start = time.time()
        PG.psql(self.db, sql, timeout=300)
        t_done = time.time()
        self.assertGreater(t_done - t_start, 1.5 * quiet,
                           "the burst was too short to show the debounce")
        self.assertEqual(self.n_directives(), n)
        self.smtp.wait_for(n_rcpt, timeout=60)
        self.wait_all_linked(timeout=60)
        infos = self.infos()
        self.check_each_group_once({"burst-%d@example.net" % r: n // n_rcpt
                                    for r in range(n_rcpt)}, infos)
        self.assertEqual(len(infos), n_rcpt)
        # the first mail went out only after the burst was over
        self.assertGreaterEqual(min(i["time"] for i in infos), t_done - 0.05)
        scans = len(re.findall(r"^mailgend: DEBUG: scan requested: notification$", d.log(),
                               re.M))
        self.assertGreaterEqual(scans, 1)
        self.assertLessEqual(scans, 3, "the burst was not debounced: %d scans" % scans)
        d.wait_status(lambda s: s["sent"] == n_rcpt, what="status sent == 5")
        self.assert_no_errors(d)

    def test_debounce_max_caps_a_long_burst(self):
        # notifications every 0.1 s for about 4 s: the quiet period (1 s) never
        # passes, but the cap (1.5 s) forces scans during the burst
        d = self.daemon(debounce_quiet_ms=1000, debounce_max_ms=1500)
        n = 40
        sql = "".join(
            PG.event_insert_sql([make_directive("long@example.net", "report.txt")],
                                fields={"source.ip": "10.2.0.%d" % i}, returning=False)
            + "SELECT pg_sleep(0.1);\n"
            for i in range(n))
        t_start = time.time()
        PG.psql(self.db, sql, timeout=120)
        t_done = time.time()
        self.assertGreater(t_done - t_start, 3.5)
        self.wait_all_linked(timeout=30)
        infos = self.infos()
        first = min(i["time"] for i in infos)
        self.assertLess(first, t_done - 1.0, "no mail during the burst: the cap did not work")
        self.assertGreaterEqual(first, t_start + 1.5 - 0.1, "mailed before the cap")
        self.assertGreaterEqual(len(infos), 2)
        self.assertEqual(sum(len(i["rows"]) for i in infos), n)
        self.assertEqual(len({i["ticket"] for i in infos}), len(infos))
        self.assertEqual(sorted(self.sent_tickets()), sorted(i["ticket"] for i in infos))
        self.assert_no_errors(d)

    def test_failing_group_does_not_hold_up_the_others(self):
        # one worker: the memory of logged failures belongs to a worker
        d = self.daemon(workers=1)
        PG.insert_events(self.db, [
            {"directives": [make_directive("good@example.net", "report.txt")]},
            {"directives": [make_directive("bad@example.net", "missing-template.txt")],
             "fields": {"source.ip": "192.0.2.66"}},
        ])
        (env, _), = self.smtp.wait_for(1, timeout=20)
        self.assertEqual(env["rcpt_tos"], ["good@example.net"])
        err = d.wait_log(r"^mailgend: ERROR: .*bad@example\.net.*$")[0].group(0)
        bad_id = PG.scalar(self.db, "SELECT id FROM directives"
                                    " WHERE recipient_address = 'bad@example.net'")
        self.assertEqual(mc.ids_of(err)[0], frozenset([int(bad_id)]), err)
        st = d.wait_status(lambda s: s["sent"] == 1 and s["failed"] == 1,
                           what="sent 1, failed 1")
        self.assertNotEqual(st["state"], "smtp-unavailable")
        # a broken group is not retried in a loop (only on the next wake-up)
        self.assert_no_mail_for(1.5, count=1, what="for the broken group")
        self.assertEqual(len(self.log_lines(d, "ERROR")), 1, d.log_tail())
        self.assertEqual(self.pending(), 1)
        # the next insert wakes the daemon up: the good one goes out; the bad
        # one is in the failed state and not tried again (issue #5)
        self.one("next@example.net", 1)
        st = d.wait_status(lambda s: s["sent"] == 2 and s["failed_groups"] == 1,
                           what="sent 2, one failed group")
        self.assertEqual(st["failed"], 1)
        self.assertEqual(len(self.log_lines(d, "ERROR")), 1, d.log_tail())
        self.assertNotRegex(d.log(), r"bad@example\.net.*\(repeated")
        self.assertEqual(self.pending(), 1)

    def test_custom_notify_channel(self):
        PG.psql("postgres", "ALTER DATABASE %s SET mailgen.notify_channel = 'mg_other';"
                % harness.sql_ident(self.db))
        d = self.daemon(notify_channel="mg_other")
        self.assertIn("listening for notifications on channel 'mg_other'", d.log())
        self.one("chan@example.net", 0)
        self.wait_all_linked()
        self.assert_no_errors(d)

    def test_postponed_group_goes_out_at_its_due_time(self):
        interval = 4
        d = self.daemon()
        drc = make_directive("later@example.net", "report.txt", notification_interval=interval)
        # a mail for these keys went out just now (recorded by "someone else")
        PG.psql(self.db,
                "BEGIN;\n"
                + PG.event_insert_sql([drc], returning=False)
                + "INSERT INTO sent (intelmq_ticket, sent_at)"
                  " VALUES ('20000101-00000001', clock_timestamp());\n"
                  "UPDATE directives SET sent_id = currval('sent_id_seq');\n"
                  "COMMIT;\n")
        sent_at = float(PG.scalar(self.db, "SELECT extract(epoch FROM sent_at) FROM sent"))
        due = sent_at + interval
        # the new event for the same keys: pending, but not due yet
        PG.insert_event(self.db, [drc], fields={"source.ip": "192.0.2.2"})
        self.assertEqual(self.pending(), 1)
        st = d.wait_status(lambda s: s["next_due"] is not None, timeout=10,
                           what="the daemon to note the postponed group")
        self.assertLess(time.time(), due, "the test was too slow to see the postponement")
        self.assertEqual(self.smtp.count(), 0)
        self.assertIn(st["next_due"], (int(due), int(due) + 1))
        self.assertEqual(st["pending_groups"], 1)
        # no insert, no flush: the due timer sends it
        (env, raw), = self.smtp.wait_for(1, timeout=interval + 10)
        info = mail_info(env, raw)
        self.assertEqual(info["rcpt"], "later@example.net")
        self.assertGreaterEqual(info["time"], due, "mailed before its due time")
        self.assertLessEqual(info["time"], due + 3, "mailed late (due timer not armed?)")
        self.wait_all_linked()
        self.assertIn("a postponed group is due", d.log())
        self.assertEqual(len(re.findall("scan requested: periodic", d.log())), 0)
        d.wait_status(lambda s: s["sent"] == 1 and s["next_due"] is None,
                      what="sent == 1 and no due time left")
        self.assert_no_errors(d)
        self.assertEqual(self.smtp.count(), 1)


# ====================================================================== (d)

class ControlTest(DaemonTestBase):
    WORKERS = 3

    def test_status_flush_pause_resume_reload(self):
        t0 = int(time.time())
        d = self.daemon(debounce_quiet_ms=60000, debounce_max_ms=120000)
        st = d.status()
        self.assertEqual(set(st), STATUS_KEYS)
        self.assertEqual(st["workers_total"], 3)
        self.assertEqual(st["workers_busy"], 0)
        self.assertEqual(st["state"], "idle")
        self.assertIs(st["paused"], False)
        self.assertIs(st["db_connected"], True)
        self.assertEqual((st["sent"], st["failed"], st["postponed"]), (0, 0, 0))
        self.assertIsNone(st["next_due"])  # null: nothing postponed
        self.assertIsNone(st["last_error"])
        self.assertEqual(st["pending_groups"], 0)
        self.assertTrue(t0 - 1 <= st["started_at"] <= st["now"] <= time.time() + 1, st)
        self.assertLessEqual(abs(st["uptime_seconds"] - (st["now"] - st["started_at"])), 1)
        self.assertTrue(st["started_at"] <= st["last_scan"] <= st["now"], st)
        # text status
        rc, out, err = d.ctl("status")
        self.assertEqual(rc, 0, err)
        self.assertIn("idle", out)

        # a debounce of a minute: nothing goes out until flush
        PG.insert_event(self.db, [make_directive("one@example.net", "report.txt")])
        self.assert_no_mail_for(1.5, what="before flush")
        rc, out, err = d.ctl("flush")
        self.assertEqual((rc, out.strip()), (0, "mailgend: flush requested"), err)
        (env, _), = self.smtp.wait_for(1, timeout=15)
        self.assertEqual(env["rcpt_tos"], ["one@example.net"])
        d.wait_log(r"control: flush requested by uid \d+")
        st = d.wait_status(lambda s: s["sent"] == 1, what="sent == 1")
        self.assertEqual(st["workers_total"], 3)

        # pause: neither a notification nor a flush sends anything
        rc, out, err = d.ctl("pause")
        self.assertEqual((rc, out.strip()), (0, "mailgend: paused"), err)
        st = d.status()
        self.assertIs(st["paused"], True)
        self.assertEqual(st["state"], "paused")
        PG.insert_event(self.db, [make_directive("two@example.net", "report.txt")])
        rc, out, err = d.ctl("--json", "flush")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {"v": 1, "ok": True})
        self.assert_no_mail_for(1.5, count=1, what="while paused")
        self.assertEqual(self.pending(), 1)
        self.assertIs(d.status()["paused"], True)
        self.assertIn("paused: no new groups are taken", d.log())

        # resume: out it goes, without a further flush
        rc, out, err = d.ctl("resume")
        self.assertEqual((rc, out.strip()), (0, "mailgend: resumed"), err)
        msgs = self.smtp.wait_for(2, timeout=15)
        self.assertEqual(msgs[1][0]["rcpt_tos"], ["two@example.net"])
        st = d.wait_status(lambda s: s["sent"] == 2, what="sent == 2")
        self.assertIs(st["paused"], False)

        # reload
        rc, out, err = d.ctl("reload")
        self.assertEqual((rc, out.strip()), (0, "mailgend: configuration reloaded"), err)
        d.wait_log(r"^mailgend: INFO: configuration reloaded$")
        rc, out, err = d.ctl("--json", "reload")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {"v": 1, "ok": True})

        # --json status parses and agrees
        rc, out, err = d.ctl("--json", "status")
        self.assertEqual(rc, 0, err)
        resp = json.loads(out)
        self.assertIs(resp["ok"], True)
        self.assertEqual(resp["status"]["sent"], 2)
        self.assertEqual(resp["status"]["workers_total"], 3)

        self.wait_all_linked()
        self.check_each_group_once({"one@example.net": 1, "two@example.net": 1})
        self.assert_no_errors(d)
        self.assertEqual(d.stop(), 0)
        # a daemon that is gone: exit 3
        rc, out, err = d.ctl("status")
        self.assertEqual(rc, 3, out + err)

    def test_socket_in_use_and_stale_socket(self):
        cfg = self.config()
        d1 = self.daemon(cfg)
        started = d1.status()["started_at"]
        # a second daemon on the same socket must not take it over
        d2 = Mailgend(cfg, socket_path=d1.socket)
        self.daemons.append(d2)
        rc = d2.wait_exit(timeout=30)
        self.assertEqual(rc, 78, d2.log())  # EX_CONFIG
        self.assertIn("another mailgend is listening on '%s'" % d1.socket, d2.log())
        self.assertTrue(d1.running)
        self.assertEqual(d1.ctl("status")[0], 0)
        self.assertEqual(d1.status()["started_at"], started)  # still the first one answers
        # a crash leaves the socket file behind; the next daemon takes it
        d1.kill()
        self.assertTrue(os.path.exists(d1.socket))
        self.assertEqual(d1.ctl("status")[0], 3)
        d1.start()
        d1.wait_ready()
        self.assertIn("control: removed the stale socket '%s'" % d1.socket, d1.log())
        self.one("after-crash@example.net", 0)
        self.assertEqual(d1.stop(), 0)
        self.assertFalse(os.path.exists(d1.socket), "socket left behind after SIGTERM")

    def test_mailgenctl_without_daemon_exits_3(self):
        tmp = TempDir("mgctl")
        self.addCleanup(tmp.cleanup)
        r = subprocess.run([os.path.join(harness.BUILD_DIR, "mailgenctl"), "-s",
                            os.path.join(tmp.path, "missing.sock"), "status"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("not running", r.stderr)


# ====================================================================== (e)

class ConcurrencyTest(DaemonTestBase):

    def test_two_daemons_and_cbmail_mail_each_group_once(self):
        n_groups = 60
        cfg = self.config(daemon={"debounce_quiet_ms": 60000, "debounce_max_ms": 120000},
                          delivery={"mails_per_session": 4}, logging_level="INFO")
        d1, d2 = self.daemon(cfg), self.daemon(cfg)
        self.assertNotEqual(d1.socket, d2.socket)
        rcpts = self.insert_groups("e", n_groups, per_group=2)
        # all three start at the same moment
        home = TempDir("mghome")
        self.addCleanup(home.cleanup)
        cfg_path = write_config(cfg, home.path)
        cb = subprocess.Popen(harness.cbmail_command(["--all"], cfg_path),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=harness._clean_env({"HOME": home.path}))
        try:
            self.assertEqual(d1.ctl("flush")[0], 0)
            self.assertEqual(d2.ctl("flush")[0], 0)
            out, err = cb.communicate(timeout=120)
        finally:
            if cb.poll() is None:
                cb.kill()
                cb.wait()
        self.assertEqual(cb.returncode, 0, err[-3000:])
        self.assertEqual(mc.error_lines(err), [])
        cb_sent = mc.summary(out)[1]
        self.wait_all_linked(timeout=60)
        self.check_each_group_once({r: 2 for r in rcpts})
        self.assertEqual(self.smtp.count(), n_groups)
        # the daemons' counters catch up with what they recorded
        counts = wait_until(lambda: (lambda a, b: (a, b) if a + b + cb_sent >= n_groups
                                     else None)(d1.status()["sent"], d2.status()["sent"]),
                            timeout=15, what="the daemons' sent counters")
        self.assertEqual(sum(counts) + cb_sent, n_groups,
                         "sent: daemons %d + %d, intelmqcbmail %d" % (counts + (cb_sent,)))
        for d in (d1, d2):
            self.assert_no_errors(d)
            self.assertNotIn("duplicate key", d.log())


# ====================================================================== (f)

class ResilienceTest(DaemonTestBase):

    def terminate(self, app):
        return int(PG.scalar(self.db, "SELECT count(pg_terminate_backend(pid))"
                                      " FROM pg_stat_activity WHERE application_name = '%s'"
                                      " AND datname = current_database()" % app))

    def backends(self, app):
        return [int(r[0]) for r in PG.query(
            self.db, "SELECT pid FROM pg_stat_activity WHERE application_name = '%s'"
                     " AND datname = current_database()" % app)]

    def n_scans(self, d):
        return len(re.findall(r"^mailgend: DEBUG: scan: \d+ groups pending", d.log(), re.M))

    def test_connections_killed_and_server_restarted(self):
        d = self.daemon(db_ping_seconds=1, retry_max_seconds=2)
        self.one("f1@example.net", 0)

        # the listener's connection is killed: it reconnects and rescans
        old = self.backends("mailgend-listen")
        self.assertEqual(len(old), 1)
        scans = self.n_scans(d)
        self.assertEqual(self.terminate("mailgend-listen"), 1)
        d.wait_log(r"database connection for notifications re-established", timeout=15)
        wait_until(lambda: self.n_scans(d) > scans, timeout=15, what="the catch-up scan")
        new = wait_until(lambda: self.backends("mailgend-listen"), timeout=10,
                         what="a new listener backend")
        self.assertNotEqual(new, old)
        # a later insert is noticed through the new LISTEN
        self.one("f2@example.net", 1)

        # the scanner's and the workers' connections are killed while idle
        d.wait_status(lambda s: s["state"] == "idle", what="idle")
        self.assertGreaterEqual(self.terminate("mailgend"), 1)
        self.one("f3@example.net", 2)

        # the server restarts; an insert right after it, and one later
        PG.restart()
        self.one("f4@example.net", 3, timeout=30)
        d.wait_log(r"database connection for notifications re-established", count=2,
                   timeout=30)
        d.wait_status(lambda s: s["db_connected"] and s["state"] == "idle", timeout=20,
                      what="connected and idle after the restart")
        self.one("f5@example.net", 4)

        self.wait_all_linked()
        self.check_each_group_once({"f%d@example.net" % i: 1 for i in range(1, 6)})
        self.assertTrue(d.running)
        d.wait_status(lambda s: s["sent"] == 5, what="sent == 5")
        self.assertEqual(d.stop(), 0)


    def test_connections_killed_mid_burst_repeat_at_most_one_mail_per_worker(self):
        n_groups = 200
        self.smtp.set_options({"data_delay": 0.01})
        d = self.daemon(logging_level="INFO")
        rcpts = self.insert_groups("m", n_groups)
        self.smtp.wait_for(30, timeout=60)
        n = int(PG.scalar(self.db, "SELECT count(pg_terminate_backend(pid))"
                                   " FROM pg_stat_activity WHERE application_name"
                                   " IN ('mailgend', 'mailgend-listen')"))
        self.assertGreaterEqual(n, 2)
        self.wait_all_linked(timeout=60)
        infos = self.infos()
        per_rcpt = collections.Counter(i["rcpt"] for i in infos)
        self.assertEqual(set(per_rcpt), set(rcpts))
        repeats = {r: c for r, c in per_rcpt.items() if c > 1}
        # a mail accepted while its worker's connection died cannot be
        # recorded: at most one such repeat per worker, never more than twice
        self.assertLessEqual(len(repeats), self.WORKERS, repeats)
        self.assertEqual(set(repeats.values()) - {2}, set(), repeats)
        self.assertEqual(len(self.sent_tickets()), n_groups)
        unrecorded = [ln for ln in self.log_lines(d, "ERROR")
                      if "accepted by the SMTP server but recording it failed" in ln]
        self.assertEqual(len(unrecorded), len(repeats), "\n".join(unrecorded))
        d.wait_status(lambda s: s["sent"] == n_groups and s["db_connected"],
                      what="all sent, connected again")
        self.assertEqual(d.stop(), 0)

    def test_refused_mail_is_deferred_and_retried_by_the_due_timer(self):
        # a 4xx refusal is no server failure (no back-off of the daemon): the
        # group is deferred by its own back-off, and the due timer tries it
        # again without any insert, flush or rescan (issue #5)
        self.smtp.set_options({"reject_data": [451, "4.3.0 try again later"]})
        d = self.daemon(self.config(delivery={"group_retry_min_seconds": 2}))
        PG.insert_event(self.db, [make_directive("refused@example.net", "report.txt")])
        d.wait_log(r"^mailgend: ERROR: mail to 'refused@example\.net' not sent "
                   r"\(temporary failure\), will retry at \S+ \(attempt 1\): ")
        self.assertEqual(self.pending(), 1)
        self.smtp.set_options({})
        t0 = time.monotonic()
        self.smtp.wait_for(1, timeout=10)
        self.assertLess(time.monotonic() - t0, 4.5)
        self.wait_all_linked()
        self.assertIn("scan requested: a postponed group is due", d.log())
        self.assertEqual(PG.scalar(self.db, "SELECT count(*) FROM mailgen_failed_groups"), "0")
        self.assertEqual(d.stop(), 0)

    def test_database_down_at_start(self):
        PG.stop()
        try:
            d = self.daemon(ready=False, retry_max_seconds=2)
            d.wait_log(r"database connection for notifications lost", timeout=20)
            st = d.wait_status(lambda s: True, what="an answer while the database is down")
            self.assertIs(st["db_connected"], False)
            self.assertEqual(st["state"], "db-unavailable")
        finally:
            PG.start()
        d.wait_ready(timeout=30)
        self.assertIs(d.status()["db_connected"], True)
        self.one("late@example.net", 0)
        self.wait_all_linked()
        self.assertEqual(d.stop(), 0)


# ====================================================================== (g)

class ShutdownTest(DaemonTestBase):

    def sink_options(self):
        return {"data_delay": 0.02}

    def test_sigterm_during_a_burst_records_every_accepted_mail(self):
        n_groups, timeout = 300, 30
        cfg = self.config(daemon={"shutdown_timeout_seconds": timeout},
                          logging_level="INFO")
        d = self.daemon(cfg)
        rcpts = self.insert_groups("g", n_groups)
        self.smtp.wait_for(20, timeout=60)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(timeout=timeout + 15)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, d.log_tail())
        self.assertLess(elapsed, timeout, "exit took %.1fs" % elapsed)
        d.wait_log(r"stopping: no new groups are taken", alive=False, timeout=1)
        d.wait_log(r"stopped: (\d+) mails sent since start", alive=False, timeout=1)

        sink = {i["ticket"] for i in self.infos()}
        recorded = set(self.sent_tickets())
        self.assertLess(len(sink), n_groups, "the burst was over before SIGTERM")
        self.assertGreater(len(recorded), 0)
        self.assertEqual(recorded - sink, set(), "recorded but never accepted")
        unrecorded = sink - recorded
        self.assertLessEqual(len(unrecorded), self.WORKERS,
                             "accepted but not recorded: %s" % sorted(unrecorded))
        # (the count in the "stopped:" line is checked by the next test)
        self.assertEqual(len(re.findall(r"^mailgend: INFO: sent mail to ", d.log(), re.M)),
                         len(recorded))
        # every recorded mail's directives are linked to it, nothing half-done
        self.assertEqual(int(PG.scalar(self.db, "SELECT count(DISTINCT sent_id)"
                                                " FROM directives")), len(recorded))
        self.assertEqual(self.pending(), n_groups - len(recorded))
        self.assert_no_errors(d)

        # the next daemon sends the rest, each group once
        d2 = self.daemon(cfg)
        self.wait_all_linked(timeout=90)
        infos = self.infos()
        per_rcpt = collections.Counter(i["rcpt"] for i in infos)
        twice_ok = {i["rcpt"] for i in infos if i["ticket"] in unrecorded}
        self.assertEqual(set(per_rcpt), set(rcpts))
        bad = {r: c for r, c in per_rcpt.items() if c != 1 and r not in twice_ok}
        self.assertEqual(bad, {}, "groups mailed more than once")
        if not unrecorded:
            self.check_each_group_once({r: 1 for r in rcpts}, infos)
        d2.wait_status(lambda s: s["sent"] == n_groups - len(recorded),
                       what="the second daemon's sent count")
        self.assertEqual(d2.stop(), 0)
        self.assert_no_errors(d2)

    def test_stopped_line_counts_the_mails_finished_during_shutdown(self):
        # One batch of 8 mails (0.3 s each) is in flight when SIGTERM comes; the
        # daemon finishes it, and its last line should count those mails.
        self.smtp.set_options({"data_delay": 0.3})
        d = self.daemon(self.config(delivery={"mails_per_session": 8}, logging_level="INFO"))
        self.insert_groups("s", 8)
        self.smtp.wait_for(1, timeout=20)
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(timeout=30), 0)
        recorded = len(self.sent_tickets())
        self.assertEqual(recorded, 8, "the batch in flight was not finished")
        stopped = d.wait_log(r"stopped: (\d+) mails sent since start", alive=False, timeout=1)
        self.assertEqual(int(stopped[0].group(1)), recorded, d.log_tail())


# ====================================================================== (h)

class ReloadTest(DaemonTestBase):

    def test_sighup_with_broken_config_keeps_running(self):
        tmp = TempDir("mgcfg")
        self.addCleanup(tmp.cleanup)
        cfg = self.config()
        path = write_config(cfg, tmp.path)
        d = self.daemon(path)
        self.one("h1@example.net", 0)

        # invalid JSON
        with open(path, "w") as f:
            f.write('{"database": {"event": ')
        d.signal(signal.SIGHUP)
        d.wait_log(r"^mailgend: ERROR: reload failed, keeping the old configuration: ")
        self.assertTrue(d.running)
        st = d.status()
        self.assertIs(st["db_connected"], True)
        # the same through mailgenctl: refused, with the reason
        rc, out, err = d.ctl("reload")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("refused", err)
        d.wait_log(r"reload failed, keeping the old configuration", count=2)
        self.one("h2@example.net", 1)

        # valid JSON, but a signing key that does not exist
        bad = json.loads(json.dumps(cfg))
        bad["openpgp"]["signing_key"] = "0123456789ABCDEF0123456789ABCDEF01234567"
        with open(path, "w") as f:
            json.dump(bad, f)
        d.signal(signal.SIGHUP)
        d.wait_log(r"reload failed, keeping the old configuration", count=3)
        self.one("h3@example.net", 2)
        info = self.infos()[2]
        ok, detail = GPG.verify(*mc.signed_parts(info["raw"]))
        self.assertTrue(ok, "still signed with the old key: " + detail)

        # fixed, with a new sender: reloaded and in force
        good = json.loads(json.dumps(cfg))
        good["sender"] = "New Sender <changed@example.org>"
        with open(path, "w") as f:
            json.dump(good, f)
        d.signal(signal.SIGHUP)
        d.wait_log(r"^mailgend: INFO: configuration reloaded$")
        self.one("h4@example.net", 3)
        self.assertEqual(self.infos()[3]["from"], "changed@example.org")
        self.assertEqual([i["from"] for i in self.infos()[:3]], ["cert@example.org"] * 3)
        self.wait_all_linked()
        self.check_each_group_once({"h%d@example.net" % i: 1 for i in range(1, 5)})
        self.assertEqual(len(self.log_lines(d, "ERROR")), 3, d.log_tail())
        self.assertEqual(d.stop(), 0)


# ====================================================================== (i)

class SmtpDownTest(DaemonTestBase):

    def test_smtp_down_backs_off_and_recovers_by_itself(self):
        cfg = self.config(daemon={"retry_min_seconds": 1, "retry_max_seconds": 4},
                          delivery={"mails_per_session": 1})
        d = self.daemon(cfg)
        self.smtp.stop()
        drawn0 = mc.tickets_drawn(PG, self.db)
        rcpts = self.insert_groups("i", 3)
        # the first failure, then retries 1 s, 2 s, 4 s apart
        marks = []
        m = d.wait_log(r"^mailgend: ERROR: .*; groups stay pending, retrying in (\d+) s$",
                       timeout=20)
        marks.append(time.monotonic())
        delays = [int(m[0].group(1))]
        for attempt in (2, 3):
            m = d.wait_log(r"^mailgend: WARNING: .* \(attempt %d\); retrying in (\d+) s$"
                           % attempt, timeout=20)
            marks.append(time.monotonic())
            delays.append(int(m[0].group(1)))
        self.assertEqual(delays, [1, 2, 4])
        gaps = [b - a for a, b in zip(marks, marks[1:])]
        self.assertGreater(gaps[0], 0.7, gaps)
        self.assertGreater(gaps[1], 1.7, gaps)
        self.assertGreater(gaps[1], gaps[0], gaps)
        st = d.status()
        self.assertEqual(st["state"], "smtp-unavailable")
        self.assertTrue(st["last_error"], st)
        self.assertEqual(st["sent"], 0)
        self.assertGreater(st["failed"], 0)
        # nothing recorded, and hardly any ticket numbers used up
        self.assertEqual(self.sent_tickets(), [])
        self.assertEqual(self.pending(), 3)
        # each mail built keeps its ticket in the outbox across attempts:
        # at most one number per group, however many attempts
        drawn = mc.tickets_drawn(PG, self.db) - drawn0
        self.assertLessEqual(drawn, len(rcpts), "%d tickets drawn while down" % drawn)
        self.assertEqual(int(PG.scalar(self.db, "SELECT count(*) FROM mailgen_outbox")), drawn)
        errs = self.log_lines(d, "ERROR")
        self.assertTrue(any("will retry" in ln or "stay pending" in ln for ln in errs), errs)

        # the server comes back: the retry timer sends everything
        self.smtp.start()
        self.smtp.wait_for(3, timeout=15)
        self.wait_all_linked()
        self.check_each_group_once({r: 1 for r in rcpts})
        d.wait_log(r"mails are going out again")
        st = d.wait_status(lambda s: s["sent"] == 3, what="sent == 3")
        self.assertNotEqual(st["state"], "smtp-unavailable")
        # no number was spent without a mail
        self.assertEqual(mc.tickets_drawn(PG, self.db) - drawn0, 3)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    run_tests()
