#!/usr/bin/python3
"""Format plugins (issue #4, include/mailgen-plugin.h) in intelmqcbmail and
mailgend, with the example plugin (examples/plugins/example_plugin.c, built as
$MG_BUILD_DIR/plugins/example_plugin.so) against real PostgreSQL, SMTP and gpg:
a "plugin-demo" group is postponed, then mailed with the plugin's template,
columns and substitutions; other groups fall through to the rules or the
built-in fallback; a plugin directory or file that others could change, or a
plugin built for another ABI version, stops the start (exit 78) naming it.
"""
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (BUILD_DIR, SOURCE_DIR, Mailgend, ServersTestCase,  # noqa: E402
                     make_config, make_directive, run_cbmail, run_tests, write_config)
import mailcheck as mc  # noqa: E402

PLUGINS = os.path.join(BUILD_DIR, "plugins")
EXAMPLE = os.path.join(PLUGINS, "example_plugin.so")
BAD_ABI = os.path.join(PLUGINS, "bad_abi_plugin.so")
FORMATS = os.path.join(SOURCE_DIR, "conf", "formats")
TEMPLATES = os.path.join(SOURCE_DIR, "conf", "templates")


class PluginTest(ServersTestCase):
    DB_PREFIX = "p_"
    TMP_PREFIX = "mgplug"

    @classmethod
    def setUpClass(cls):
        for path in (EXAMPLE, BAD_ABI):
            if not os.path.exists(path):
                raise unittest.SkipTest("%s not built" % path)
        super().setUpClass()

    def plugin_dir(self, name, plugins=(EXAMPLE,), dir_mode=0o755, file_mode=0o644):
        """A plugin directory as an operator sets it up: owned by root (the
        tests run as root), 0755, each plugin 0644."""
        d = os.path.join(self.tdir.path, name)
        os.mkdir(d)
        for p in plugins:
            dst = os.path.join(d, os.path.basename(p))
            shutil.copyfile(p, dst)
            os.chmod(dst, file_mode)
        os.chmod(d, dir_mode)
        return d

    def config(self, plugin_dir, rules_dir=None, **kw):
        cfg = make_config(pg=self.pg, db=self.db, gpg=self.gpg, smtp=self.smtp,
                          template_dir=TEMPLATES, sender="CERT <cert@example.org>", **kw)
        cfg["format_plugin_dir"] = plugin_dir
        if rules_dir is not None:
            cfg["format_rules_dir"] = rules_dir
        return cfg

    def demo(self, rcpt):
        return make_directive(rcpt, "example-template.txt", notification_format="plugin-demo",
                              event_data_format="csv_demo")

    def test_demo_group_postponed_then_sent_with_the_plugins_answer(self):
        # plugins come first: the shipped rules' fallback would take the group too
        d = self.plugin_dir("demo")
        self.insert(self.demo("demo@example.net"), {"source.ip": "192.0.2.7"},
                    extra={"demo_note": "hello"})
        rc, out, err = run_cbmail(["--all"], self.config(d, FORMATS))
        self.assertEqual((rc, mc.summary(out)), (0, (False, 0, 1, 0)), out + err)
        m = re.search(r"postponed by rule example_plugin\.so: plugin-demo until (\S+) "
                      r"\(demo: newest directive age\)", err)
        self.assertIsNotNone(m, err)
        due = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ")
        inserted = datetime.datetime.strptime(self.pg.scalar(
            self.db, "SELECT to_char(max(inserted_at) AT TIME ZONE 'UTC' + interval"
                     " '60 seconds', 'YYYY-MM-DD\"T\"HH24:MI:SS') FROM directives"),
            "%Y-%m-%dT%H:%M:%S")
        self.assertLessEqual(abs((due - inserted).total_seconds()), 1, err)
        self.assertEqual(self.smtp.count(), 0)

        # two minutes old: mailed with the plugin's template, columns, substitutions
        self.pg.psql(self.db, "UPDATE directives SET inserted_at = now() - interval '2 min'")
        rc, out, err = run_cbmail(["--all"], self.config(d, FORMATS))
        self.assertEqual((rc, mc.summary(out)), (0, (False, 1, 0, 0)), out + err)
        (rcpts, subject, body), = self.mails()
        self.assertEqual(rcpts, ["demo@example.net"])
        self.assertEqual(subject, "Demo report about AS 64496")
        ticket = self.pg.scalar(self.db, "SELECT intelmq_ticket FROM sent")
        self.assertIn("ticket %s: 1 directive, see below." % ticket, body)
        rows = [ln for ln in body.splitlines() if ln.startswith('"')]
        self.assertEqual(rows, ['"address","note"', '"192.0.2.7","hello"'])

    def test_other_groups_fall_through_to_rules_and_fallback(self):
        d = self.plugin_dir("through")
        # with rules: the shipped 99_fallback.json takes it
        self.insert(make_directive("other@example.net", "example-template.txt",
                                   notification_format="other", event_data_format="x"),
                    {"source.ip": "192.0.2.9"})
        rc, out, err = run_cbmail(["--all"], self.config(d, FORMATS))
        self.assertEqual((rc, mc.summary(out)), (0, (False, 1, 0, 0)), out + err)
        (rcpts, subject, body), = self.mails()
        self.assertEqual(rcpts, ["other@example.net"])
        self.assertRegex(subject, r"^\[CERT Example #\d{8}-\d{8}\] Possibly vulnerable")
        self.assertIn('"192.0.2.9"', body)
        self.assertIn('"asn","ip","timestamp","src_port","dst_ip","dst_port","dst_host","proto"', body)

        # without rules: the built-in fallback, with its interval rule
        self.smtp.clear()
        self.insert(make_directive("other@example.net", "example-template.txt",
                                   notification_format="other", event_data_format="x",
                                   notification_interval=3600),
                    {"source.ip": "192.0.2.10"})
        rc, out, err = run_cbmail(["--all"], self.config(d))
        self.assertEqual((rc, mc.summary(out)), (0, (False, 0, 1, 0)), out + err)
        self.assertRegex(err, r"postponed by rule built-in fallback until \S+ "
                              r"\(notification interval\)")
        self.insert(make_directive("new@example.net", "example-template.txt",
                                   notification_format="other", event_data_format="x"),
                    {"source.ip": "192.0.2.11"})
        rc, out, err = run_cbmail(["--all"], self.config(d))
        self.assertEqual((rc, mc.summary(out)), (0, (False, 1, 1, 0)), out + err)
        (rcpts, subject, body), = self.mails()
        self.assertEqual(rcpts, ["new@example.net"])
        self.assertIn('"192.0.2.11"', body)

    def test_an_empty_plugin_directory_leaves_the_built_in_interval_rule(self):
        d = self.plugin_dir("none", plugins=())
        for ip in ("192.0.2.20", "192.0.2.21"):
            self.insert(make_directive("other@example.net", "example-template.txt",
                                       notification_format="other", event_data_format="x",
                                       notification_interval=3600), {"source.ip": ip})
            rc, out, err = run_cbmail(["--all"], self.config(d))
            self.assertEqual(rc, 0, out + err)
            self.assertIn("format_plugin_dir '%s' holds no plugins (*.so), ignoring" % d, err)
        # the second one is held back by the interval rule itself, not by the
        # rules' built-in fallback (which a non-empty plugin set would ask)
        self.assertEqual(mc.summary(out), (False, 0, 1, 0), out + err)
        self.assertRegex(err, r"postponed: last mail \d+ s ago, interval 3600 s")
        self.assertNotIn("built-in fallback", err)
        self.assertEqual(self.smtp.count(), 1)

    def refused(self, cfg, *want):
        rc, out, err = run_cbmail(["--all"], cfg)
        self.assertEqual(rc, 78, out + err)
        for w in want:
            self.assertIn(w, err)
        self.assertEqual(self.smtp.count(), 0)

    def test_untrusted_plugins_are_refused_at_start(self):
        self.insert(self.demo("x@example.net"), age_minutes=5)
        # a group-writable plugin file
        d = self.plugin_dir("gw-file", file_mode=0o664)
        self.refused(self.config(d), "plugin '%s/example_plugin.so' is writable by group"
                     " or others (mode 0664)" % d, "writable only by root")
        # a world-writable directory
        d = self.plugin_dir("ow-dir", dir_mode=0o757)
        self.refused(self.config(d), "directory '%s' is writable by group or others" % d)
        # a plugin owned by another user
        d = self.plugin_dir("other-owner")
        os.chown(os.path.join(d, "example_plugin.so"), 12345, 12345)
        self.refused(self.config(d), "plugin '%s/example_plugin.so' is owned by uid 12345" % d)
        # a symbolic link is not followed
        d = self.plugin_dir("link", plugins=())
        os.symlink(EXAMPLE, os.path.join(d, "example_plugin.so"))
        self.refused(self.config(d), "cannot open plugin '%s/example_plugin.so'" % d,
                     "symbolic links are not followed")
        # a relative path, and a missing directory
        self.refused(self.config("plugins"), "format_plugin_dir: 'plugins' is not an absolute")
        self.refused(self.config(os.path.join(self.tdir.path, "nope")),
                     "cannot open directory")
        # an init() that fails: its message
        d = self.plugin_dir("init")
        rc, out, err = run_cbmail(["--all"], self.config(d), env={"MG_DEMO_MIN_AGE": "x"})
        self.assertEqual(rc, 78, out + err)
        self.assertIn("plugin '%s/example_plugin.so': init failed: MG_DEMO_MIN_AGE: "
                      "expected 0..86400, got 'x'" % d, err)
        # nothing was decided meanwhile
        self.assertEqual(self.pg.scalar(
            self.db, "SELECT count(*) FROM directives WHERE sent_id IS NULL"), "1")

    def test_wrong_abi_version_is_refused(self):
        d = self.plugin_dir("abi", plugins=(EXAMPLE, BAD_ABI))
        self.refused(self.config(d), "plugin '%s/bad_abi_plugin.so' was built for plugin ABI "
                     "version 2, this program has version 1" % d)
        # mailgend --check-config says the same
        cfg = write_config(self.config(d), self.tdir.path, "abi.conf")
        home = os.path.join(self.tdir.path, "home")
        os.makedirs(home, exist_ok=True)
        r = subprocess.run([os.path.join(BUILD_DIR, "mailgend"), "-c", cfg, "--check-config"],
                           capture_output=True, text=True, timeout=60,
                           env={"HOME": home, "PATH": os.environ.get("PATH", "")})
        self.assertEqual(r.returncode, 78, r.stdout + r.stderr)
        self.assertIn("bad_abi_plugin.so' was built for plugin ABI version 2", r.stderr)

    def test_daemon_mails_a_plugin_postponed_group_at_its_due_time(self):
        # the plugin holds the group until its directive is 2 s old; the
        # scanner arms the due timer there (the rescan is an hour away)
        d = self.plugin_dir("daemon")
        cfg = self.config(d, daemon={"debounce_quiet_ms": 100, "debounce_max_ms": 1000,
                                     "workers": 2, "rescan_interval_seconds": 3600,
                                     "control_socket": "/nonexistent/x.sock"})
        with Mailgend(cfg, env={"MG_DEMO_MIN_AGE": "2"}) as mgd:
            mgd.wait_ready()
            self.assertIn("format plugin example_plugin.so: plugin-demo loaded from '%s'" % d,
                          mgd.log())
            self.insert(self.demo("later@example.net"), {"source.ip": "192.0.2.8"})
            (env, _), = self.smtp.wait_for(1, timeout=30)
            inserted = float(self.pg.scalar(self.db, "SELECT extract(epoch FROM inserted_at)"
                                                     " FROM directives"))
            self.assertGreaterEqual(env["time"], inserted + 2 - 0.05)
            self.assertIn("scan requested: a postponed group is due", mgd.log())
            (rcpts, subject, body), = self.mails()
            self.assertEqual(subject, "Demo report about AS 64496")

            # a reload keeps the plugins loaded at start, and says that
            # another directory needs a restart
            cfg["format_plugin_dir"] = self.plugin_dir("empty", plugins=())
            write_config(cfg, os.path.dirname(mgd.config_path),
                         os.path.basename(mgd.config_path))
            mgd.signal(signal.SIGHUP)
            mgd.wait_log(r"format_plugin_dir changed; plugins are loaded at start only")
            mgd.wait_log(r"configuration reloaded")
            self.smtp.clear()
            self.insert(self.demo("again@example.net"), {"source.ip": "192.0.2.9"})
            (env, _), = self.smtp.wait_for(1, timeout=30)
            (rcpts, subject, body), = self.mails()
            self.assertEqual((rcpts, subject), (["again@example.net"],
                                                "Demo report about AS 64496"))
            self.assertEqual(mgd.stop(), 0)


if __name__ == "__main__":
    run_tests()
