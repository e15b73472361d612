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

Transport security (fixed for the life of the process):

    --tls-mode starttls|smtps  offer STARTTLS, or speak TLS from the first
                               byte (implicit TLS); needs --tls-cert/--tls-key
    --auth-user U --auth-password-file F
                               offer AUTH (PLAIN, LOGIN) and require it for
                               MAIL; every attempt is appended to --auth-log
                               as {"login", "success", "tls", "time"} (never
                               the password)

The envelope lines then also hold "tls" (true when the mail came over TLS)
and "auth_user".
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP, AuthResult


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
        # no attribute may start with "auth_": aiosmtpd takes those for mechanisms
        self.tls_mode = args.tls_mode
        self.authlog_path = args.auth_log
        self.login_user = args.auth_user
        self.login_password = None
        if args.auth_password_file:
            with open(args.auth_password_file, "rb") as f:
                self.login_password = f.read().rstrip(b"\r\n")
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(self.maildir, sub), exist_ok=True)

    def _append(self, path, obj):
        line = (json.dumps(obj) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def session_tls(self, session):
        return self.tls_mode == "smtps" or getattr(session, "ssl", None) is not None

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        login = getattr(auth_data, "login", b"") or b""
        password = getattr(auth_data, "password", b"") or b""
        ok = (self.login_user is not None and login == self.login_user.encode()
              and password == self.login_password)
        self._append(self.authlog_path, {"login": login.decode("utf-8", "replace"),
                                     "mechanism": mechanism, "success": ok,
                                     "tls": self.session_tls(session), "time": time.time()})
        if ok:
            session.auth_user = self.login_user
        return AuthResult(success=ok, handled=False)

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
            "tls": self.session_tls(session),
            "auth_user": getattr(session, "auth_user", None),
            "time": time.time(),
        })
        return "250 OK queued as %s" % name


async def main_async(args):
    handler = Handler(args)
    loop = asyncio.get_running_loop()
    ctx = None
    if args.tls_mode != "none":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    kw = {}
    if args.auth_user:
        # aiosmtpd counts only STARTTLS as TLS; with implicit TLS every
        # connection is encrypted, so its own check has to be off.
        kw = dict(authenticator=handler.authenticate, auth_required=True,
                  auth_require_tls=args.tls_mode != "smtps")
    if args.tls_mode == "starttls":
        kw["tls_context"] = ctx

    def factory():
        return SMTP(handler, hostname="sink.test", decode_data=False,
                    enable_SMTPUTF8=True, data_size_limit=args.data_size_limit, **kw)

    server = await loop.create_server(
        factory, host=args.host, port=args.port, family=socket.AF_INET, reuse_address=True,
        ssl=ctx if args.tls_mode == "smtps" else None)
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
    p.add_argument("--tls-mode", choices=("none", "starttls", "smtps"), default="none")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--auth-user")
    p.add_argument("--auth-password-file")
    p.add_argument("--auth-log", default=os.devnull)
    args = p.parse_args()
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
