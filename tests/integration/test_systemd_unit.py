#!/usr/bin/python3
"""systemd/mailgend.service: systemd accepts it, and its sandbox rates no worse than OK."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MG_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("MG_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
UNIT = os.path.join(SOURCE_DIR, "systemd", "mailgend.service")


class SystemdUnit(unittest.TestCase):
    def setUp(self):
        if shutil.which("systemd-analyze") is None:
            self.fail("systemd-analyze is not installed")
        self.dir = tempfile.mkdtemp(prefix="mgunit")
        self.addCleanup(shutil.rmtree, self.dir)
        # verify checks that ExecStart exists: point it at the binary we built
        with open(UNIT) as f:
            text = f.read()
        self.assertIn("ExecStart=/usr/sbin/mailgend ", text)
        text = text.replace("/usr/sbin/mailgend", os.path.join(BUILD_DIR, "mailgend"))
        self.unit = os.path.join(self.dir, "mailgend.service")
        with open(self.unit, "w") as f:
            f.write(text)

    def test_verify(self):
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", self.unit],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.strip(), "", r.stderr)

    def test_security_rating(self):
        r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                            self.unit], capture_output=True, text=True)
        m = re.search(r"Overall exposure level for mailgend.service: ([0-9.]+) (\w+)", r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        print("exposure:", m.group(1), m.group(2))
        self.assertIn(m.group(2), ("PERFECT", "SAFE", "OK"))

    def test_required_settings(self):
        with open(UNIT) as f:
            text = f.read()
        for line in ("Type=notify", "NoNewPrivileges=yes", "ProtectSystem=strict",
                     "ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet=\n",
                     "RuntimeDirectory=mailgen", "User=mailgen"):
            self.assertIn(line, text)
        self.assertRegex(text, r"(?m)^WatchdogSec=\d+")
        self.assertRegex(text, r"(?m)^RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6$")
        self.assertRegex(text, r"(?m)^ReadWritePaths=\S*gnupghome$")


if __name__ == "__main__":
    unittest.main(verbosity=2)
