#!/usr/bin/python3
"""The control server (daemon/control.c) and mailgenctl, against a stub daemon.

mg-control-test runs the real control server over stub daemon_*()
functions (daemon/control-test-main.c): a fixed status whose last_error
counts the flush/pause/resume/reload calls, and a reload that fails when
MG_STUB_RELOAD_FAIL is set.  The real mailgenctl talks to it; raw sockets
play misbehaving clients.

Environment:
    MG_BUILD_DIR     build tree with mg-control-test and mailgenctl
    MG_TEST_WRAPPER  command prefixed to mg-control-test, e.g. valgrind
    MG_KEEP_TMP      keep the temporary directories

Must run as root: some clients run as other users (runuser, setuid).
"""

import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import wait_until  # noqa: E402

STUB = os.path.join(harness.BUILD_DIR, "mg-control-test")
CTL = os.path.join(harness.BUILD_DIR, "mailgenctl")
WRAPPER = shlex.split(os.environ.get("MG_TEST_WRAPPER", ""))

STATUS_REQ = b'{"v":1,"cmd":"status"}\n'
STATUS_KEYS = {
    "state", "started_at", "now", "uptime_seconds", "workers_busy", "workers_total",
    "pending_groups", "pending_directives", "next_due", "last_scan", "sent", "postponed",
    "failed", "failed_groups", "deferred_groups", "paused", "db_connected", "last_error",
}
EX_CONFIG = 78
NOBODY = pwd.getpwnam("nobody")
# Users and a group that exist nowhere else, for the connection-limit test.
OTHER_GID = 47110
OTHER_UIDS = [47111, 47112, 47113, 47114, 47115]


class Stub:
    """mg-control-test on a socket; stopped by PID with SIGTERM."""

    def __init__(self, sock, tmp, args=(), env=None, wait=True):
        self.sock = sock
        self.log_path = os.path.join(tmp, "stub-%d.log" % time.monotonic_ns())
        self.log = open(self.log_path, "w+")
        full_env = dict(os.environ)
        full_env.pop("MG_STUB_RELOAD_FAIL", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(WRAPPER + [STUB, *args, sock], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=full_env)
        harness._register(self)
        if wait:
            wait_until(lambda: self.proc.poll() is not None or answers(sock),
                       timeout=30, what="mg-control-test to answer on %s" % sock)
            if self.proc.poll() is not None:
                raise AssertionError("mg-control-test exited with %d:\n%s"
                                     % (self.proc.returncode, self.text()))

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_exit(self, timeout=30):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        """SIGTERM, then the exit status (0 when it shut down cleanly)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        self.cleanup()
        return rc

    def cleanup(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()
        harness._unregister(self)


class Raw:
    """A raw client: bytes in, lines out."""

    def __init__(self, path, timeout=10):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        try:
            self.s.connect(path)
        except OSError:
            self.s.close()
            raise
        self.buf = b""

    def send(self, data, quiet=False):
        """Send data; with quiet, a peer that already closed is no error."""
        try:
            self.s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            if not quiet:
                raise

    def line(self):
        """The next line without "\\n", or None at EOF (or reset after the data)."""
        while b"\n" not in self.buf:
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def response(self):
        line = self.line()
        return None if line is None else json.loads(line)

    def closed(self):
        """True when the server closed the connection and nothing more is queued."""
        return self.line() is None

    def close(self):
        self.s.close()


def answers(sock):
    try:
        r = Raw(sock, timeout=2)
    except OSError:
        return False
    try:
        r.send(STATUS_REQ)
        resp = r.response()
        return bool(resp and resp.get("ok"))
    except (OSError, ValueError):
        return False
    finally:
        r.close()


def stale_socket(path):
    """Leave a socket file nobody listens on, as a killed daemon does."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()


class ControlTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mg-ctl-", dir="/tmp")
        if not os.environ.get("MG_KEEP_TMP"):
            self.addCleanup(shutil.rmtree, self.tmp, True)
        # other users must reach the socket (and their copy of mailgenctl)
        os.chmod(self.tmp, 0o755)
        self.sock = os.path.join(self.tmp, "mailgend.sock")
        self.stub = None

    def tearDown(self):
        if self.stub is not None:
            rc = self.stub.stop()
            # a clean shutdown (and, under sanitizers or valgrind, no leak or error)
            self.assertEqual(rc, 0, self.stub.text())
            self.assertFalse(os.path.lexists(self.sock), "socket file left behind")

    def start(self, *args, env=None):
        self.stub = Stub(self.sock, self.tmp, args, env)
        return self.stub

    def ctl(self, *args, user=None, timeout=30):
        cmd = [CTL, "-s", self.sock, *args]
        if user is not None:
            copy = os.path.join(self.tmp, "mailgenctl")
            if not os.path.exists(copy):
                shutil.copy2(CTL, copy)
            cmd = ["runuser", "-u", user, "--", copy, "-s", self.sock, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def status(self):
        p = self.ctl("--json", "status")
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)["status"]

    # ------------------------------------------------------------ mailgenctl

    def test_status_text(self):
        self.start()
        p = self.ctl("status")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        lines = p.stdout.splitlines()
        self.assertEqual([ln.split(":", 1)[0] for ln in lines],
                         ["state", "uptime", "workers", "pending", "next due", "last scan",
                          "since start", "held back", "database", "last error"])
        self.assertEqual(lines[0], "state:        idle")
        self.assertRegex(lines[1], r"^uptime:       1h 2m [0-9]+s$")
        self.assertEqual(lines[2], "workers:      1 busy, 3 idle")
        self.assertEqual(lines[3], "pending:      12 groups, 40 directives")
        self.assertRegex(lines[4], r"^next due:     \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC "
                                   r"\(in [45]m [0-9]+s\)$")
        self.assertRegex(lines[5], r"^last scan:    .* UTC \(1[0-9]s ago\)$")
        self.assertEqual(lines[6], "since start:  10 sent, 2 postponed, 1 failed")
        self.assertEqual(lines[7], "held back:    0 failed, 0 deferred groups")
        self.assertEqual(lines[8], "database:     connected")
        self.assertEqual(lines[9], "last error:   stub: flush=0 pause=0 resume=0 reload=0")

    def test_status_json(self):
        self.start()
        p = self.ctl("--json", "status")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.endswith("}\n"))
        self.assertEqual(p.stdout.count("\n"), 1)
        resp = json.loads(p.stdout)
        self.assertEqual(resp["v"], 1)
        self.assertIs(resp["ok"], True)
        st = resp["status"]
        self.assertEqual(set(st), STATUS_KEYS)
        self.assertEqual(st["uptime_seconds"], st["now"] - st["started_at"])
        self.assertEqual(st["next_due"], st["now"] + 300)
        self.assertEqual(st["last_scan"], st["now"] - 12)
        self.assertLessEqual(abs(st["now"] - time.time()), 5)
        self.assertEqual((st["workers_busy"], st["workers_total"]), (1, 4))
        self.assertIs(st["paused"], False)
        self.assertIs(st["db_connected"], True)

    def test_commands(self):
        self.start()
        for cmd, out in (("flush", "mailgend: flush requested"),
                         ("pause", "mailgend: paused"),
                         ("resume", "mailgend: resumed"),
                         ("pause", "mailgend: paused"),
                         ("reload", "mailgend: configuration reloaded")):
            p = self.ctl(cmd)
            self.assertEqual((p.returncode, p.stdout, p.stderr), (0, out + "\n", ""), cmd)
        st = self.status()
        self.assertEqual(st["state"], "paused")
        self.assertIs(st["paused"], True)
        self.assertEqual(st["last_error"], "stub: flush=1 pause=2 resume=1 reload=1")
        p = self.ctl("resume")
        self.assertEqual(p.returncode, 0)
        self.assertIs(self.status()["paused"], False)
        # --json prints the raw answer for the other commands too
        p = self.ctl("--json", "flush")
        self.assertEqual(json.loads(p.stdout), {"v": 1, "ok": True})
        log = self.stub.text()
        for word in ("flush", "pause", "resume", "reload"):
            self.assertRegex(log, r"INFO: control: %s requested by uid 0 \(pid \d+\)" % word)

    def test_reload_failure(self):
        msg = "/etc/intelmq/intelmq-mailgen.conf: 'smtp.port': expected an integer 1..65535"
        self.start(env={"MG_STUB_RELOAD_FAIL": msg})
        p = self.ctl("reload")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stdout, "")
        self.assertEqual(p.stderr, "mailgenctl: mailgend refused: %s\n" % msg)
        p = self.ctl("--json", "reload")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(json.loads(p.stdout), {"v": 1, "ok": False, "error": msg})
        # the daemon is still there
        self.assertEqual(self.ctl("status").returncode, 0)

    def test_not_running(self):
        p = self.ctl("status")
        self.assertEqual(p.returncode, 3)
        self.assertEqual(p.stderr, "mailgenctl: mailgend is not running (no socket at %s)\n"
                         % self.sock)
        stale_socket(self.sock)
        p = self.ctl("flush")
        self.assertEqual(p.returncode, 3)
        self.assertIn("mailgend is not running", p.stderr)
        self.assertIn(self.sock, p.stderr)
        # and after a daemon stopped: its socket file is gone
        os.unlink(self.sock)
        stub = Stub(self.sock, self.tmp)
        self.assertEqual(self.ctl("status").returncode, 0)
        self.assertEqual(stub.stop(), 0)
        self.assertFalse(os.path.lexists(self.sock))
        self.assertEqual(self.ctl("status").returncode, 3)

    def test_failed_retry_drop(self):
        self.start()
        p = self.ctl("failed")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "1 failed, 1 deferred\n\n7  failed  stub@example.org\n"
                                   "8  deferred  stub@example.org\n")
        p = self.ctl("retry", "7")
        self.assertEqual((p.returncode, p.stdout), (0, "stub: retry 7 by uid 0\n"), p.stderr)
        p = self.ctl("retry", "all")
        self.assertEqual((p.returncode, p.stdout), (0, "stub: retry 0 by uid 0\n"), p.stderr)
        p = self.ctl("drop", "8")
        self.assertEqual((p.returncode, p.stdout), (0, "stub: drop 8 by uid 0\n"), p.stderr)
        p = self.ctl("drop", "9")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr, "mailgenctl: mailgend refused: no failed group with id 9\n")
        p = self.ctl("--json", "retry", "8")
        self.assertEqual(json.loads(p.stdout),
                         {"v": 1, "ok": True, "message": "stub: retry 8 by uid 0"})

    def test_usage(self):
        for args in ((), ("explode",), ("status", "extra"), ("-t", "0", "status"),
                     ("-t", "x", "status"), ("--bogus", "status"), ("retry",),
                     ("drop", "all"), ("drop", "0"), ("retry", "x"), ("retry", "1", "2"),
                     ("failed", "1")):
            p = subprocess.run([CTL, *args], capture_output=True, text=True)
            self.assertEqual(p.returncode, 64, args)
            self.assertIn("mailgenctl", p.stderr)
        p = subprocess.run([CTL, "--help"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0)
        for text in ("Exit status:", "  3   mailgend is not running", "  4   permission denied",
                     "  64  usage error", "/run/mailgen/mailgend.sock"):
            self.assertIn(text, p.stdout)

    def test_timeout(self):
        # something that accepts and never answers
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(self.sock)
        srv.listen(4)
        self.addCleanup(srv.close)
        t0 = time.monotonic()
        p = self.ctl("-t", "1", "status")
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr, "mailgenctl: no answer from mailgend on %s within 1 s\n"
                         % self.sock)
        os.unlink(self.sock)

    # ------------------------------------------------------------- access

    def test_socket_mode(self):
        self.start()
        st = os.lstat(self.sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)

    def test_denied_by_file_mode(self):
        self.start()
        p = self.ctl("status", user="nobody")
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertEqual(p.stderr, "mailgenctl: permission denied on %s (run as root or as a "
                         "member of the daemon's group)\n" % self.sock)

    def test_denied_by_peer_credentials(self):
        self.start()
        os.chmod(self.sock, 0o666)  # past the file mode: now SO_PEERCRED decides
        for cmd in ("status", "pause"):
            p = self.ctl(cmd, user="nobody")
            self.assertEqual(p.returncode, 4, p.stderr)
            self.assertIn("mailgenctl: permission denied on %s" % self.sock, p.stderr)
        wait_until(lambda: "WARNING: control: access denied to uid %d gid %d"
                   % (NOBODY.pw_uid, NOBODY.pw_gid) in self.stub.text(),
                   what="the access-denied log line")
        self.assertIs(self.status()["paused"], False)

    def test_allowed_by_group(self):
        # the daemon's group, as a deployment would set it up
        self.start("-g", str(NOBODY.pw_gid))
        os.chown(self.sock, 0, NOBODY.pw_gid)
        p = self.ctl("pause", user="nobody")
        self.assertEqual((p.returncode, p.stdout), (0, "mailgend: paused\n"), p.stderr)
        self.assertRegex(self.stub.text(),
                         r"control: pause requested by uid %d " % NOBODY.pw_uid)

    def test_allowed_by_uid(self):
        self.start("-u", str(NOBODY.pw_uid), "-g", "0")
        os.chmod(self.sock, 0o666)
        p = self.ctl("status", user="nobody")
        self.assertEqual(p.returncode, 0, p.stderr)

    # ------------------------------------------------------ bad clients

    def test_long_line(self):
        self.start()
        r = Raw(self.sock)
        r.send(b'{"v":1,"cmd":"status","x":"' + b"x" * 10240 + b'"}\n')
        resp = r.response()
        self.assertEqual(resp, {"v": 1, "ok": False,
                                "error": "request too long (more than 4096 bytes)"})
        self.assertTrue(r.closed())
        r.close()
        # a line of exactly MG_CTL_LINE_MAX bytes is still fine
        r = Raw(self.sock)
        r.send(STATUS_REQ[:-1] + b" " * (4096 - len(STATUS_REQ) + 1) + b"\n")
        self.assertIs(r.response()["ok"], True)
        r.close()
        self.assertEqual(self.ctl("status").returncode, 0)

    def test_bad_requests(self):
        self.start()
        r = Raw(self.sock)
        for req, want in ((b"hello\n", "request: invalid JSON at offset 0"),
                          (b"[1,2]\n", "request is not a JSON object"),
                          (b'{"cmd":"status"}\n', "request has no protocol version 'v'"),
                          (b'{"v":2,"cmd":"status"}\n', "unsupported protocol version 2"),
                          (b'{"v":1,"cmd":"shutdown"}\n', "unknown command 'shutdown'"),
                          (b'{"v":1,"cmd":7}\n', "'cmd' is not a string"),
                          (b'{"v":1,"cmd":"status"} x\n', "garbage after the JSON object"),
                          (b'{"v":1,\0"cmd":"status"}\n', "NUL byte at offset 7"),
                          (b'{"v":1,"cmd":"st\xffatus"}\n', "invalid JSON"),
                          (b"\n", "empty request")):
            r.send(req)
            resp = r.response()
            self.assertIs(resp["ok"], False, req)
            self.assertIn(want, resp["error"], req)
        # the connection is still usable, and requests may be pipelined
        r.send(STATUS_REQ + b'{"v":1,"cmd":"flush"}\n' + STATUS_REQ)
        self.assertIn("status", r.response())
        self.assertEqual(r.response(), {"v": 1, "ok": True})
        self.assertIn("flush=1", r.response()["status"]["last_error"])
        r.close()

    def test_half_close(self):
        self.start()
        # a request, then EOF: the answer still comes
        r = Raw(self.sock)
        r.send(STATUS_REQ)
        r.s.shutdown(socket.SHUT_WR)
        self.assertIs(r.response()["ok"], True)
        self.assertTrue(r.closed())
        r.close()
        # a partial line, then EOF: no answer, just the end
        r = Raw(self.sock)
        r.send(STATUS_REQ[:-1])
        r.s.shutdown(socket.SHUT_WR)
        self.assertTrue(r.closed())
        r.close()

    def test_per_uid_limit(self):
        self.start()
        conns = [Raw(self.sock) for _ in range(20)]
        results = []
        for r in conns:
            r.send(STATUS_REQ, quiet=True)  # the refused ones are closed already
            results.append(r.response())
        ok = [x for x in results if x and x["ok"]]
        refused = [x for x in results if x and not x["ok"]]
        self.assertEqual(len(ok), 4)
        self.assertEqual(len(refused), 16)
        for x in refused:
            self.assertEqual(x["error"], "too many connections from this user")
        self.assertTrue(all(results[:4]) and all(x["ok"] for x in results[:4]))
        p = self.ctl("status")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr, "mailgenctl: mailgend refused: too many connections from "
                         "this user\n")
        for r in conns:
            r.close()
        wait_until(lambda: self.ctl("status").returncode == 0,
                   what="the server to notice the closed connections")

    def test_total_limit(self):
        # five users of the daemon's group with four connections each: 16 fit
        self.start("-g", str(OTHER_GID))
        os.chown(self.sock, 0, OTHER_GID)
        helper = (
            "import json, socket, sys\n"
            "out = []\n"
            "conns = []\n"
            "for _ in range(4):\n"
            "    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            "    s.settimeout(10)\n"
            "    s.connect(sys.argv[1])\n"
            "    try:\n"
            "        s.sendall(b'{\"v\":1,\"cmd\":\"status\"}\\n')\n"
            "    except OSError:\n"
            "        pass  # refused and closed already: the answer is waiting\n"
            "    buf = b''\n"
            "    while not buf.endswith(b'\\n'):\n"
            "        try:\n"
            "            chunk = s.recv(65536)\n"
            "        except ConnectionResetError:\n"
            "            chunk = b''\n"
            "        if not chunk:\n"
            "            break\n"
            "        buf += chunk\n"
            "    out.append(json.loads(buf) if buf else None)\n"
            "    conns.append(s)\n"
            "print(json.dumps(out), flush=True)\n"
            "sys.stdin.read()\n")
        helpers, results = [], []
        try:
            for uid in OTHER_UIDS:
                h = subprocess.Popen([harness.PYTHON, "-c", helper, self.sock], user=uid,
                                     group=OTHER_GID, extra_groups=[], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
                helpers.append(h)
                results.append(json.loads(h.stdout.readline()))
        finally:
            for h in helpers:
                h.stdin.close()
                h.stdout.close()
                h.wait(timeout=30)
        for res in results[:4]:
            self.assertTrue(all(x["ok"] for x in res), res)
        for x in results[4]:
            self.assertEqual(x, {"v": 1, "ok": False, "error": "too many connections"})
        self.assertIn("control: 16 connections open, refusing uid %d" % OTHER_UIDS[4],
                      self.stub.text())
        wait_until(lambda: self.ctl("status").returncode == 0,
                   what="the server to notice the closed connections")

    def test_client_gone(self):
        self.start()
        # many answers for a client that never reads them and leaves: EPIPE/ECONNRESET
        for _ in range(5):
            r = Raw(self.sock)
            r.send(STATUS_REQ * 1000)
            r.close()
        # until the server has seen them go, they count against the per-uid limit
        wait_until(lambda: self.ctl("status").returncode == 0, timeout=30,
                   what="the server to drop the clients that left")
        self.assertEqual(self.stub.proc.poll(), None)

    def test_slow_reader(self):
        self.start()
        # more answers than the server buffers: it must stop reading, not drop any
        n = 3000
        r = Raw(self.sock, timeout=30)
        sender = threading.Thread(target=r.send, args=(STATUS_REQ * n,))
        sender.start()
        # all requests are sent while nothing is read; then read every answer
        sender.join(timeout=20)
        self.assertFalse(sender.is_alive(), "the server stopped taking requests")
        for i in range(n):
            resp = r.response()
            self.assertIsNotNone(resp, "answer %d missing" % i)
            self.assertIs(resp["ok"], True)
        sender.join()
        r.close()

    def test_idle_timeout(self):
        self.start()
        r = Raw(self.sock, timeout=30)
        t0 = time.monotonic()
        self.assertTrue(r.closed())
        self.assertGreaterEqual(time.monotonic() - t0, 9)
        r.close()

    # ------------------------------------------------- socket lifecycle

    def test_stale_socket_replaced(self):
        stale_socket(self.sock)
        self.start()
        self.assertIn("control: removed the stale socket '%s'" % self.sock, self.stub.text())
        self.assertEqual(self.ctl("status").returncode, 0)

    def test_second_daemon_refused(self):
        self.start()
        ino = os.lstat(self.sock).st_ino
        second = Stub(self.sock, self.tmp, wait=False)
        self.assertEqual(second.wait_exit(), EX_CONFIG)
        self.assertIn("another mailgend is listening on '%s'" % self.sock, second.text())
        second.cleanup()
        self.assertEqual(os.lstat(self.sock).st_ino, ino)
        self.assertEqual(self.ctl("status").returncode, 0)

    def test_not_a_socket(self):
        with open(self.sock, "w") as f:
            f.write("keep me\n")
        stub = Stub(self.sock, self.tmp, wait=False)
        self.assertEqual(stub.wait_exit(), EX_CONFIG)
        self.assertIn("control socket '%s' exists and is not a socket" % self.sock, stub.text())
        stub.cleanup()
        with open(self.sock) as f:
            self.assertEqual(f.read(), "keep me\n")
        os.unlink(self.sock)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("test_control.py: must run as root (clients run as other users)")
    unittest.main(verbosity=2)
