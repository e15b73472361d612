#!/usr/bin/python3
"""Signing through gpg-agent directly (delivery.sign_via_agent, docs/signing.md).

Every mail is checked with the gpg command line, not with our code: real
PostgreSQL, SMTP sink and GnuPG homes with ed25519, rsa3072 and nistp256
keys, all started by harness.py.
"""

import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (GpgHome, Mailgend, ServersTestCase, make_config,  # noqa: E402
                     make_directive, run_cbmail, run_tests, wait_until)
import mailcheck as mc  # noqa: E402

TEMPLATE = ("[CERT #${ticket_number}] Report for AS${source.asn}\n"
            "\n"
            "${events_as_csv}\n"
            "Ticket: ${ticket_number}\n")
AGENT = "signing through gpg-agent directly"
FALLBACK = "signed through gpg"
DIGEST_ALGO = {"pgp-sha256": 8, "pgp-sha384": 9, "pgp-sha512": 10, "pgp-sha224": 11}


class SigningTest(ServersTestCase):
    DB_PREFIX = "g_"
    TMP_PREFIX = "mgsig"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.homes = {"ed25519": cls.gpg}
        with open(os.path.join(cls.tdir.path, "t.txt"), "w") as f:
            f.write(TEMPLATE)

    @classmethod
    def home(cls, algo):
        """One GnuPG home per key type, made on first use."""
        if algo not in cls.homes:
            cls.homes[algo] = GpgHome(algo=algo)
            cls.addClassCleanup(cls.homes[algo].cleanup)
        return cls.homes[algo]

    def config(self, gpg, **kw):
        return make_config(pg=self.pg, db=self.db, smtp=self.smtp, gpg=gpg,
                           template_dir=self.tdir.path, **kw)

    def insert_groups(self, n, first_asn=64496):
        for i in range(n):
            self.pg.insert_event(self.db, [make_directive(
                "abuse@as%d.example" % (first_asn + i), "t.txt",
                aggregate_identifier={"source.asn": first_asn + i})])

    def checked_mails(self, gpg, signer=None):
        """[(micalg, gpg --list-packets of the signature)] of the mails at the
        sink, each signature verified by gpg as made by signer (the signing
        (sub)key's fingerprint, default the key's), its digest algorithm the
        one micalg names."""
        out = []
        for _env, raw in self.smtp.messages():
            msg = mc.parse_mail(raw)
            self.assertEqual(msg.get_content_type(), "multipart/signed")
            signed, sig = mc.signed_parts(raw)
            ok, detail = gpg.verify(signed, sig)
            self.assertTrue(ok, "signature does not verify:\n" + detail)
            self.assertIn("VALIDSIG " + (signer or gpg.fingerprint), detail)
            bad = signed.replace(b"Ticket", b"Tickex", 1)
            self.assertFalse(gpg.verify(bad, sig)[0], "signature verifies altered data")
            packets = self.packets(gpg, sig)
            self.assertIn("digest algo %d," % DIGEST_ALGO[msg.get_param("micalg")], packets)
            self.assertIn("issuer fpr v4 " + (signer or gpg.fingerprint), packets)
            out.append((msg.get_param("micalg"), packets))
        return out

    def packets(self, gpg, sig):
        with tempfile.NamedTemporaryFile(dir="/tmp", suffix=".asc") as f:
            f.write(sig)
            f.flush()
            r = gpg.gpg(["--list-packets", f.name])
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.decode("utf-8", "replace")

    def cbmail(self, cfg):
        rc, out, err = run_cbmail(["--all"], cfg)
        self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        return err

    # ------------------------------------------------------------------ tests

    def test_ed25519_signatures_come_from_the_agent_and_verify_in_gpg(self):
        gpg = self.home("ed25519")
        self.insert_groups(3)
        err = self.cbmail(self.config(gpg))
        self.assertIn(AGENT, err)
        self.assertNotIn(FALLBACK, err)
        mails = self.checked_mails(gpg)
        self.assertEqual(len(mails), 3)
        for micalg, pk in mails:
            self.assertEqual(micalg, "pgp-sha256")
            # a v4 signature of a binary document, algorithm 22 (EdDSA)
            self.assertIn("signature packet: algo 22,", pk)
            self.assertIn("sigclass 0x00", pk)

    def test_rsa3072_signatures_come_from_the_agent_with_the_hash_gpg_chooses(self):
        gpg = self.home("rsa3072")
        self.insert_groups(2)
        err = self.cbmail(self.config(gpg, delivery={"sign_via_agent": False}))
        self.assertIn("signing through gpg ('delivery.sign_via_agent' is false)", err)
        by_gpg = self.checked_mails(gpg)
        self.assertEqual(len(by_gpg), 2)
        self.smtp.clear()
        self.insert_groups(2, first_asn=65000)
        err = self.cbmail(self.config(gpg))
        self.assertIn(AGENT, err)
        self.assertNotIn(FALLBACK, err)
        by_agent = self.checked_mails(gpg)
        self.assertEqual(len(by_agent), 2)
        self.assertEqual({m for m, _ in by_agent}, {by_gpg[0][0]})
        self.assertIn("signature packet: algo 1,", by_agent[0][1])

    def test_a_signing_subkey_signs_through_the_agent(self):
        # the usual layout: a certification-only primary key, a signing subkey
        gpg = GpgHome(generate=False)
        self.addCleanup(gpg.cleanup)
        for args in (["--quick-gen-key", gpg.uid, "ed25519", "cert", "never"],):
            r = gpg.gpg(["--pinentry-mode", "loopback", "--passphrase", ""] + args)
            self.assertEqual(r.returncode, 0, r.stderr)
        r = gpg.gpg(["--with-colons", "--list-secret-keys"])
        gpg.fingerprint = [ln.split(":")[9] for ln in r.stdout.decode().splitlines()
                           if ln.startswith("fpr:")][0]
        r = gpg.gpg(["--pinentry-mode", "loopback", "--passphrase", "",
                     "--quick-add-key", gpg.fingerprint, "ed25519", "sign", "never"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = gpg.gpg(["--with-colons", "--list-secret-keys"])
        fprs = [ln.split(":")[9] for ln in r.stdout.decode().splitlines()
                if ln.startswith("fpr:")]
        self.assertEqual(len(fprs), 2)
        subkey = fprs[1]
        self.insert_groups(1)
        err = self.cbmail(self.config(gpg))
        self.assertIn(AGENT, err)
        self.assertNotIn(FALLBACK, err)
        self.assertEqual(len(self.checked_mails(gpg, signer=subkey)), 1)

    def test_a_key_that_expires_while_the_daemon_runs_stops_signing(self):
        gpg = GpgHome(generate=False)
        self.addCleanup(gpg.cleanup)
        r = gpg.gpg(["--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
                     gpg.uid, "ed25519", "sign", "seconds=10"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = gpg.gpg(["--with-colons", "--list-secret-keys"])
        lines = [ln.split(":") for ln in r.stdout.decode().splitlines()]
        gpg.fingerprint = [f[9] for f in lines if f[0] == "fpr"][0]
        expires = int([f[6] for f in lines if f[0] == "sec"][0])
        with Mailgend(self.config(gpg, daemon={"debounce_quiet_ms": 0, "workers": 1})) as d:
            d.wait_ready()
            self.assertIn(AGENT, d.log())
            self.insert_groups(1)
            self.smtp.wait_for(1)
            wait_until(lambda: time.time() > expires + 1, timeout=30, what="the key's expiry")
            self.insert_groups(1, first_asn=65300)
            # the agent path gives up, and gpg refuses the expired key: no mail
            d.wait_log(r"WARNING: signed through gpg: the key has expired; every signature")
            d.wait_log(r"ERROR: .*failed, will retry: signing failed")
            self.assertEqual(self.smtp.count(), 1)
            self.assertEqual(d.stop(), 0)
        # the one mail was signed while the key was valid (gpg now says EXPKEYSIG)
        (_env, raw), = self.smtp.messages()
        _ok, detail = gpg.verify(*mc.signed_parts(raw))
        self.assertIn("[GNUPG:] EXPKEYSIG", detail)
        self.assertIn("[GNUPG:] VALIDSIG " + gpg.fingerprint, detail)

    def test_a_key_the_agent_path_does_not_know_is_signed_through_gpg(self):
        gpg = self.home("nistp256")
        self.insert_groups(1)
        err = self.cbmail(self.config(gpg))
        self.assertIn("signing through gpg (gpg-agent directly is not possible: a key type "
                      "other than RSA and Ed25519)", err)
        self.assertEqual(len(self.checked_mails(gpg)), 1)

    def test_what_gpg_conf_adds_to_signatures_keeps_signing_through_gpg(self):
        gpg = GpgHome()
        self.addCleanup(gpg.cleanup)
        with open(os.path.join(gpg.home, "gpg.conf"), "w") as f:
            f.write("sig-notation mailgen@example.org=test\n")
        self.insert_groups(1)
        err = self.cbmail(self.config(gpg))
        self.assertIn("signing through gpg (gpg-agent directly is not possible: gpg adds "
                      "armor headers or subpackets to its signatures (gpg.conf))", err)
        mails = self.checked_mails(gpg)
        self.assertEqual(len(mails), 1)
        self.assertIn("mailgen@example.org=test", mails[0][1])

    def test_daemon_signs_on_when_the_agent_is_killed(self):
        gpg = self.home("ed25519")
        fallback = r"WARNING: signed through gpg: "
        with Mailgend(self.config(gpg, daemon={"debounce_quiet_ms": 0, "workers": 1})) as d:
            d.wait_ready()
            self.assertIn(AGENT, d.log())
            self.insert_groups(1)
            self.smtp.wait_for(1)
            # the worker's connection to the agent breaks: the next mail goes
            # through gpg (which starts an agent again), the one after that
            # over a new connection to it
            r = subprocess.run(["gpgconf", "--homedir", gpg.home, "--kill", "gpg-agent"],
                               capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.insert_groups(1, first_asn=65100)
            self.smtp.wait_for(2)
            d.wait_log(fallback)
            self.insert_groups(1, first_asn=65200)
            self.smtp.wait_for(3)
            self.assertEqual(d.stop(), 0)
            self.assertEqual(len(re.findall(fallback, d.log())), 1, d.log_tail())
        self.assertEqual(len(self.checked_mails(gpg)), 3)


if __name__ == "__main__":
    run_tests()
