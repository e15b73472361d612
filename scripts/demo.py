#!/usr/bin/python3
"""scripts/demo.py - the demo run of scripts/demo.sh (uses the test harness's servers).

Starts mailgend against a throw-away PostgreSQL, SMTP server and GnuPG home,
inserts sample IntelMQ events, and waits until the daemon has mailed them.
"""

import datetime
import email
import email.policy
import os
import shutil
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
os.environ.setdefault("MG_SOURCE_DIR", TOP)
os.environ.setdefault("MG_BUILD_DIR", os.path.join(TOP, "build"))

from harness import (BUILD_DIR, GpgHome, PgCluster, SmtpSink, TempDir,  # noqa: E402
                     make_config, make_directive, wait_until, write_config)

DEMO_DIR = os.path.join(TOP, "demo")

# Sample events, handled by the format rules of conf/formats/: open DNS
# resolvers in two networks (Shadowserver rule: its table, inline CSV; the
# second network is in the constituency "Government", so the rule
# 01_constituency_copies.json copies its mail to an internal address),
# malware infections in a third (CSV as an attachment by the suffix of the
# event data format) and one group of the demo format (attachment).
SAMPLES = [
    ("abuse@as64496.example", 64496, "192.0.2.%d", "dns", 53, 3, "shadowserver-csv.txt",
     "shadowserver", "csv_DNS-open-resolvers", None),
    ("abuse@as64497.example", 64497, "198.51.100.%d", "dns", 53, 2, "shadowserver-csv.txt",
     "shadowserver", "csv_DNS-open-resolvers", "Government"),
    ("cert@as64498.example", 64498, "203.0.113.%d", "http", 80, 4, "malware-infection.txt",
     "malware-infection", "malware_csv_attachment", None),
    ("noc@as64499.example", 64499, "233.252.0.%d", "ssh", 22, 1,
     "example-template-attachment.txt", "demo", "demo", None),
]


def first_part_and_signature(raw):
    """The signed bytes (RFC 3156: the first part, exactly) and the signature."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    boundary = msg.get_boundary().encode()
    delim = b"--" + boundary
    start = raw.index(delim + b"\r\n") + len(delim) + 2
    end = raw.index(b"\r\n" + delim, start)
    sig = msg.get_payload()[1].get_payload(decode=True)
    return raw[start:end], sig


def main():
    if os.path.isdir(DEMO_DIR):
        shutil.rmtree(DEMO_DIR)
    os.makedirs(os.path.join(DEMO_DIR, "mails"))
    with PgCluster() as pg, SmtpSink() as smtp, GpgHome() as gpg:
        print("demo: PostgreSQL on %s (port %s), SMTP on %s:%d, GnuPG home %s"
              % (pg.host, pg.port, smtp.host, smtp.port, gpg.home))
        pg.create_db("intelmq-events")
        events = []
        # Shadowserver data is held back until it is 2 hours old (and the
        # newest directive 15 minutes): the samples were observed 3 hours ago
        observed = (datetime.datetime.now(datetime.timezone.utc)
                    - datetime.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        for rcpt, asn, ipfmt, proto_app, port, count, tmpl, nf, edf, group in SAMPLES:
            agg = {"source.asn": asn, "time.observation": observed}
            if group is not None:
                agg["recipient_group"] = group
            for i in range(count):
                events.append({
                    "directives": [make_directive(
                        recipient_address=rcpt, template_name=tmpl,
                        notification_format=nf, event_data_format=edf,
                        aggregate_identifier=agg, notification_interval=86400)],
                    "fields": {"source.ip": ipfmt % (i + 10), "source.asn": asn,
                               "source.port": port, "protocol.application": proto_app,
                               "classification.identifier": "demo-bot"},
                })
        run = TempDir("mgdemo")
        sock = os.path.join(run.path, "mailgend.sock")
        cfg = make_config(pg=pg, db="intelmq-events", gpg=gpg, smtp=smtp,
                          sender="CERT Example <cert@example.org>", logging_level="INFO",
                          format_rules_dir=os.path.join(TOP, "conf", "formats"),
                          daemon={"control_socket": sock, "debounce_quiet_ms": 500,
                                  "workers": 2})
        cfg_path = write_config(cfg, DEMO_DIR)
        print("demo: config written to %s" % cfg_path)
        print("demo: $ mailgend -c %s" % cfg_path)
        log_path = os.path.join(DEMO_DIR, "mailgend.log")
        with open(log_path, "w") as log:
            daemon = subprocess.Popen([os.path.join(BUILD_DIR, "mailgend"), "-c", cfg_path],
                                      stderr=log)
        try:
            def ctl(*args):
                return subprocess.run([os.path.join(BUILD_DIR, "mailgenctl"), "-s", sock]
                                      + list(args), capture_output=True, text=True)
            wait_until(lambda: "listening for notifications" in open(log_path).read(),
                       timeout=30, what="mailgend to listen")
            # as if IntelMQ had stored them 20 minutes ago, in one transaction
            pg.psql("intelmq-events", "BEGIN;\n" + "".join(
                pg.event_insert_sql(e["directives"], e["fields"], returning=False)
                for e in events) + "UPDATE directives SET inserted_at = now() - interval"
                " '20 minutes';\nCOMMIT;")
            print("demo: inserted %d events; the trigger made %s directives and woke mailgend"
                  % (len(events), pg.scalar("intelmq-events", "SELECT count(*) FROM directives")))
            smtp.wait_for(len(SAMPLES), timeout=60)
            wait_until(lambda: pg.scalar("intelmq-events", "SELECT count(*) FROM directives"
                                         " WHERE sent_id IS NULL") == "0",
                       timeout=30, what="all directives recorded as sent")
            print("demo: $ mailgenctl status")
            sys.stdout.write(ctl("status").stdout)
        finally:
            daemon.terminate()
            rc = daemon.wait(timeout=60)
        print("demo: mailgend stopped (exit status %d); its log:" % rc)
        sys.stdout.write(open(log_path).read())
        ok = True
        for n, (env, raw) in enumerate(smtp.messages(), 1):
            path = os.path.join(DEMO_DIR, "mails", "%02d.eml" % n)
            with open(path, "wb") as f:
                f.write(raw)
            signed, sig = first_part_and_signature(raw)
            good, _ = gpg.verify(signed, sig)
            ok = ok and good
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            print("demo: %s  to %-24s  %s  signature: %s"
                  % (path, ", ".join(env["rcpt_tos"]), msg["Subject"],
                     "good" if good else "BAD"))
        print("demo: tickets recorded in table sent:")
        sys.stdout.write(pg.psql("intelmq-events",
                                 "SELECT s.intelmq_ticket, count(d.id) AS directives"
                                 " FROM sent s JOIN directives d ON d.sent_id = s.id"
                                 " GROUP BY 1 ORDER BY 1"))
        print("demo: the mails are in %s (open them with any mail client, e.g."
              " 'mutt -f' on a Maildir or a plain viewer)" % os.path.join(DEMO_DIR, "mails"))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
