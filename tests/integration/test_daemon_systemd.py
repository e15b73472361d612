#!/usr/bin/python3
"""mailgend's side of the systemd protocols, without a service manager.

sd_notify: NOTIFY_SOCKET points at a datagram socket of this test, which
records every message: READY=1 once listening, STATUS= lines, WATCHDOG=1 at
half of WATCHDOG_USEC, RELOADING=1 then READY=1 around a reload, STOPPING=1.

journald: with JOURNAL_STREAM naming the daemon's stderr, records go to
/run/systemd/journal/socket as native journal datagrams with MAILGEN_*
fields.  The test binds that socket itself, so it runs only where no
journald owns it (CI machines have none).
"""

import os
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (GpgHome, Mailgend, PgCluster, SmtpSink, TempDir,  # noqa: E402
                     make_config, make_directive, run_tests, wait_until)

JOURNAL_DIR = "/run/systemd/journal"
JOURNAL_SOCKET = JOURNAL_DIR + "/socket"


class DatagramRecorder:
    """A unix datagram socket that keeps every message it receives."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages = []
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.messages.append((time.monotonic(), data))

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def close(self):
        self.stopped = True
        self.thread.join(5)
        self.sock.close()
        os.unlink(self.path)


def notify_lines(rec):
    """Every sd_notify message, split into its KEY=VALUE lines."""
    return [(t, data.decode().split("\n")) for t, data in rec.snapshot()]


def journal_records(rec):
    """Native journal datagrams as dicts (text fields only, as mg_log sends them)."""
    out = []
    for _, data in rec.snapshot():
        fields = {}
        for line in data.decode("utf-8", "replace").split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                fields[k] = v
        out.append(fields)
    return out


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.gpg = GpgHome()

    @classmethod
    def tearDownClass(cls):
        cls.gpg.cleanup()
        cls.pg.cleanup()

    def setUp(self):
        self.db = "mg_%s" % self._testMethodName[-20:].lower()
        self.pg.create_db(self.db)
        self.smtp = SmtpSink()
        self.addCleanup(self.smtp.cleanup)
        self.tmp = TempDir("mgsd")
        self.addCleanup(self.tmp.cleanup)

    def config(self):
        return make_config(pg=self.pg, db=self.db, gpg=self.gpg, smtp=self.smtp,
                           template_dir=os.path.join(os.environ.get("MG_SOURCE_DIR", ""),
                                                     "conf", "templates")
                           if os.environ.get("MG_SOURCE_DIR") else None,
                           daemon={"debounce_quiet_ms": 100, "workers": 1,
                                   "rescan_interval_seconds": 3600})

    def insert(self, rcpt):
        self.pg.insert_event(self.db, [make_directive(recipient_address=rcpt,
                                                      template_name="example-template.txt")])


class SdNotify(Base):
    def test_ready_status_watchdog_reload_stopping(self):
        rec = DatagramRecorder(os.path.join(self.tmp.path, "notify"))
        self.addCleanup(rec.close)
        env = {"NOTIFY_SOCKET": rec.path, "WATCHDOG_USEC": "400000"}
        with Mailgend(self.config(), env=env) as d:
            d.wait_ready()
            wait_until(lambda: any("READY=1" in l for _, l in notify_lines(rec)), 10,
                       what="READY=1")
            self.insert("a@example.org")
            self.smtp.wait_for(1, 30)
            wait_until(lambda: any(x.startswith("STATUS=") and "1 sent" in x
                                   for _, l in notify_lines(rec) for x in l), 10,
                       what="a STATUS= line counting the mail")
            # the watchdog keeps coming, about every WATCHDOG_USEC / 2
            wait_until(lambda: sum("WATCHDOG=1" in l for _, l in notify_lines(rec)) >= 4, 10,
                       what="four WATCHDOG=1")
            beats = [t for t, l in notify_lines(rec) if "WATCHDOG=1" in l]
            gaps = [b - a for a, b in zip(beats, beats[1:])]
            self.assertLess(max(gaps), 0.4, gaps)  # within WATCHDOG_USEC
            n = len(notify_lines(rec))
            d.signal(signal.SIGHUP)
            wait_until(lambda: any("READY=1" in l for _, l in notify_lines(rec)[n:]), 10,
                       what="READY=1 after the reload")
            after = [l for _, l in notify_lines(rec)[n:]]
            first_reloading = next(i for i, l in enumerate(after) if "RELOADING=1" in l)
            first_ready = next(i for i, l in enumerate(after) if "READY=1" in l)
            self.assertLess(first_reloading, first_ready)
            self.assertEqual(d.stop(), 0)
        self.assertTrue(any("STOPPING=1" in l for _, l in notify_lines(rec)))

    def test_not_ready_before_listening(self):
        """With the database down at start, READY=1 waits until LISTEN works."""
        rec = DatagramRecorder(os.path.join(self.tmp.path, "notify"))
        self.addCleanup(rec.close)
        cfg = self.config()
        cfg["daemon"]["retry_min_seconds"] = 1
        cfg["daemon"]["retry_max_seconds"] = 1
        self.pg.stop()
        restarted = False
        try:
            with Mailgend(cfg, env={"NOTIFY_SOCKET": rec.path}) as d:
                d.wait_log(r"database connection for notifications lost", 20)
                self.assertFalse(any("READY=1" in l for _, l in notify_lines(rec)))
                self.pg.start()
                restarted = True
                wait_until(lambda: any("READY=1" in l for _, l in notify_lines(rec)), 30,
                           what="READY=1 once the database is back")
                self.assertEqual(d.stop(), 0)
        finally:
            if not restarted:
                self.pg.start()


@unittest.skipIf(os.path.exists(JOURNAL_SOCKET),
                 "a journald owns %s here; this test binds it itself" % JOURNAL_SOCKET)
class Journal(Base):
    def test_structured_fields(self):
        made = [d for d in ("/run/systemd", JOURNAL_DIR) if not os.path.isdir(d)]
        os.makedirs(JOURNAL_DIR, exist_ok=True)
        rec = DatagramRecorder(JOURNAL_SOCKET)
        for d in made:  # removed last-made first, after the socket
            self.addCleanup(os.rmdir, d)
        self.addCleanup(rec.close)
        d = Mailgend(self.config(), start=False)
        self.addCleanup(d.cleanup)
        # JOURNAL_STREAM must name the daemon's stderr: "device:inode" of its log file
        log_path = d.log_path
        open(log_path, "w").close()
        st = os.stat(log_path)
        d.env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        d.start()
        with d:
            wait_until(lambda: any(r.get("MESSAGE", "").startswith("listening for")
                                   for r in journal_records(rec)), 30,
                       what="the 'listening' record in the journal")
            self.insert("j@example.org")
            self.smtp.wait_for(1, 30)
            wait_until(lambda: any(r.get("MAILGEN_TICKET") for r in journal_records(rec)), 10,
                       what="a record with MAILGEN_TICKET")
            self.assertEqual(d.stop(), 0)
            plain = d.log()
        sent = [r for r in journal_records(rec) if r.get("MAILGEN_TICKET")][0]
        self.assertEqual(sent["PRIORITY"], "6")
        self.assertEqual(sent["SYSLOG_IDENTIFIER"], "mailgend")
        self.assertEqual(sent["MAILGEN_RECIPIENT"], "j@example.org")
        self.assertRegex(sent["MAILGEN_TICKET"], r"^\d{8}-\d{8}$")
        self.assertRegex(sent["MAILGEN_DIRECTIVE_IDS"], r"^\d+$")
        self.assertRegex(sent["MAILGEN_EVENT_IDS"], r"^\d+$")
        self.assertIn(sent["MAILGEN_TICKET"], sent["MESSAGE"])
        # nothing went to the plain stderr log while the journal was there
        self.assertNotIn("sent mail to", plain)


if __name__ == "__main__":
    run_tests()
