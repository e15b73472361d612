#!/usr/bin/python3
"""SMTP sink for the mailgen-c integration tests (started by harness.SmtpSink).

Listens on --host/--port (port 0: the OS chooses), writes the port it got to
--port-file once it accepts connections, and stores every accepted message
unchanged (the bytes after DATA, dot-unstuffed, CRLF kept) as a file in the
Maildir --maildir (tmp/ then renamed into new/).  For every accepted message
one JSON line is appended to --log:

    {"file": ..., "mail_from": ..., "rcpt_tos": [...], "size": N,
     "peer": [host, port], "mail_options": [...], "rcpt_options": [...],
     "time": unix_time}

Behaviour is controlled by the JSON file --options, re-read whenever it
changes:

    reject_rcpt  {"address": [code, "text"], ...}  RCPT TO answer per address
    reject_data  [code, "text"]                     answer to the end of DATA
    refuse_all   [code, "text"]                     answer to every MAIL FROM
    data_delay   seconds                            delay before answering DATA

Rejections are logged as JSON lines to --reject-log.  SIGTERM/SIGINT stop
the server cleanly.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time

from aiosmtpd.smtp import SMTP


class Options:
    def __init__(self, path):
        self.path = path
        self.mtime = None
        self.data = {}

    def get(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.data, self.mtime = {}, None
            return self.data
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if key != self.mtime:
            try:
                with open(self.path) as f:
                    self.data = json.load(f)
                self.mtime = key
            except (OSError, ValueError) as e:
                print("smtp_sink: bad options file: %s" % e, file=sys.stderr, flush=True)
        return self.data


def reply(spec, default_code):
    code, text = (list(spec) + [None, None])[:2]
    code = int(code or default_code)
    if not text:
        text = "rejected by test sink"
    return "%d %s" % (code, text)


class Handler:
    def __init__(self, args):
        self.maildir = args.maildir
        self.log = args.log
        self.reject_log = args.reject_log
        self.options = Options(args.options)
        self.counter = 0
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(self.maildir, sub), exist_ok=True)

    def _append(self, path, obj):
        line = (json.dumps(obj) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def _reject(self, stage, answer, **info):
        info.update(stage=stage, code=int(answer.split()[0]), reply=answer, time=time.time())
        self._append(self.reject_log, info)
        return answer

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        refuse = self.options.get().get("refuse_all")
        if refuse:
            return self._reject("mail", reply(refuse, 554), address=address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        opts = self.options.get()
        if opts.get("refuse_all"):
            return self._reject("rcpt", reply(opts["refuse_all"], 554), address=address)
        rejects = {k.lower(): v for k, v in (opts.get("reject_rcpt") or {}).items()}
        spec = rejects.get(address.lower())
        if spec:
            return self._reject("rcpt", reply(spec, 550), address=address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        opts = self.options.get()
        delay = opts.get("data_delay")
        if delay:
            await asyncio.sleep(float(delay))
        spec = opts.get("reject_data") or opts.get("refuse_all")
        if spec:
            return self._reject("data", reply(spec, 554), mail_from=envelope.mail_from,
                                rcpt_tos=list(envelope.rcpt_tos))
        raw = envelope.original_content
        if raw is None:
            raw = envelope.content
        if isinstance(raw, str):  # only with decode_data=True, which we do not use
            raw = raw.encode("utf-8", "surrogateescape")
        self.counter += 1
        name = "%d.%d_%d.mgsink" % (int(time.time()), os.getpid(), self.counter)
        tmp = os.path.join(self.maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(raw)
        os.rename(tmp, os.path.join(self.maildir, "new", name))
        self._append(self.log, {
            "file": name,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "size": len(raw),
            "peer": list(session.peer) if session.peer else None,
            "mail_options": list(envelope.mail_options),
            "rcpt_options": list(envelope.rcpt_options),
            "time": time.time(),
        })
        return "250 OK queued as %s" % name


async def main_async(args):
    handler = Handler(args)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", decode_data=False,
                     enable_SMTPUTF8=True, data_size_limit=args.data_size_limit),
        host=args.host, port=args.port, family=socket.AF_INET, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, args.port_file)
    print("smtp_sink: listening on %s:%d" % (args.host, port), file=sys.stderr, flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()
    print("smtp_sink: stopped", file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--maildir", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--reject-log", required=True)
    p.add_argument("--options", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--data-size-limit", type=int, default=64 * 1024 * 1024)
    args = p.parse_args()
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
