"""Helpers shared by the intelmqcbmail integration tests (test_cbmail_*.py).

Everything here looks at what intelmqcbmail produced from the outside: the
raw mails the SMTP sink stored, its stdout/stderr, and the database rows.

    parse_mail(raw)            email.message.EmailMessage (policy=default)
    signed_parts(raw)          (signed bytes, signature bytes) per RFC 3156
    csv_between(text, a, b)    CSV rows between two marker lines
    summary(stdout)            the final "N mails sent, M postponed, E errors." line
    error_lines(stderr)        the ERROR lines
    ids_of(line)               (directive ids, event ids) named by a log line
    ticket_seq(pg, db)         (last_value, is_called) of intelmq_ticket_seq
    tickets_drawn(pg, db)      how many numbers the sequence has handed out
    db_snapshot(pg, db)        the mailgen tables as text, for before/after checks
    expected_csv_row(fields)   the original's fallback columns for one event
"""

import csv
import datetime
import email
import email.policy
import email.utils
import re

TICKET_RE = re.compile(r"\b(\d{8}-\d{8})\b")
TICKET_FULL_RE = re.compile(r"^\d{8}-\d{8}$")
SEQ_MIN = 10000001  # MINVALUE of intelmq_ticket_seq

# The original's fallback table (intelmqmail/tableformat.py, build_table_formats):
# (IntelMQ field, column title)
FALLBACK_COLUMNS = [
    ("source.asn", "asn"),
    ("source.ip", "ip"),
    ("time.source", "timestamp"),
    ("source.port", "src_port"),
    ("destination.ip", "dst_ip"),
    ("destination.port", "dst_port"),
    ("destination.fqdn", "dst_host"),
    ("protocol.transport", "proto"),
]
FALLBACK_TITLES = [t for _, t in FALLBACK_COLUMNS]

# (after an interactive prompt, which ends without a newline, on the same line)
SUMMARY_RE = re.compile(r"^(?:.*\? )?(Simulation: )?(\d+) mails sent, (\d+) postponed,"
                        r" (\d+) errors\.$")


def parse_mail(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def header_block(raw):
    """The raw header section (bytes, without the blank line)."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        raise AssertionError("no CRLF CRLF between header and body")
    return raw[:end]


def raw_header(raw, name):
    """The raw (unfolded) value of the first header `name`, as bytes."""
    lines = header_block(raw).split(b"\r\n")
    out = None
    for line in lines:
        if out is not None:
            if line[:1] in (b" ", b"\t"):
                out += line
                continue
            break
        if line.lower().startswith(name.lower().encode() + b":"):
            out = line[len(name) + 1:]
    return out


def bare_lf(raw):
    """Offsets of LF bytes not preceded by CR (a mail must use CRLF only)."""
    return [i for i in range(len(raw)) if raw[i:i + 1] == b"\n" and raw[i - 1:i] != b"\r"]


def signed_parts(raw):
    """Cut a multipart/signed message per RFC 3156 section 5.

    The signed data is everything after the CRLF ending the first boundary
    delimiter line up to, not including, the CRLF before the next delimiter.
    Returns (signed_bytes, signature_bytes); the signature is the decoded
    payload of the second part."""
    msg = parse_mail(raw)
    boundary = msg.get_param("boundary")
    if not boundary:
        raise AssertionError("multipart/signed without boundary")
    delim = b"--" + boundary.encode("ascii")
    body_start = raw.index(b"\r\n\r\n") + 4
    # the first delimiter starts a line (the body's first line or after CRLF)
    pos = body_start
    while True:
        i = raw.find(delim, pos)
        if i < 0:
            raise AssertionError("first boundary delimiter not found")
        if i == body_start or raw[i - 2:i] == b"\r\n":
            break
        pos = i + 1
    start = raw.index(b"\r\n", i) + 2
    # the next delimiter line: CRLF, "--boundary", then CRLF, "--" or white space
    pos = start
    while True:
        end = raw.find(b"\r\n" + delim, pos)
        if end < 0:
            raise AssertionError("second boundary delimiter not found")
        after = raw[end + 2 + len(delim):end + 4 + len(delim)]
        if after in (b"\r\n", b"--") or after[:1] in (b" ", b"\t"):
            break
        pos = end + 1
    parts = msg.get_payload()
    sig = parts[1].get_payload(decode=True)
    return raw[start:end], sig


def csv_between(text, begin_marker, end_marker):
    """Parse the CSV lines between the lines `begin_marker` and `end_marker`."""
    lines = text.splitlines()
    try:
        a = lines.index(begin_marker)
        b = lines.index(end_marker, a + 1)
    except ValueError:
        raise AssertionError("markers %r/%r not found in:\n%s" % (begin_marker, end_marker, text))
    return list(csv.reader([ln for ln in lines[a + 1:b] if ln != ""]))


def csv_rows(text):
    return list(csv.reader([ln for ln in text.splitlines() if ln != ""]))


def summary(stdout):
    """(simulation, sent, postponed, errors) from the summary line (must be the last line)."""
    lines = [ln for ln in stdout.splitlines() if ln.strip() != ""]
    if not lines:
        raise AssertionError("no output on stdout")
    m = SUMMARY_RE.match(lines[-1].strip())
    if not m:
        raise AssertionError("last stdout line is not the summary: %r" % lines[-1])
    return (m.group(1) is not None, int(m.group(2)), int(m.group(3)), int(m.group(4)))


def error_lines(stderr):
    return [ln for ln in stderr.splitlines() if "ERROR" in ln]


def _ids(line, key):
    m = re.search(r"(?:^|\s)%s=([0-9][0-9,]*)" % key, line)
    if not m:
        return None
    return frozenset(int(x) for x in m.group(1).split(",") if x)


def ids_of(line):
    """(directive_ids, event_ids) named in a log line, as frozensets (or None)."""
    return _ids(line, "directive_ids"), _ids(line, "event_ids")


def ticket_seq(pg, db):
    last, called = pg.query(db, "SELECT last_value, is_called FROM intelmq_ticket_seq")[0]
    return int(last), called == "t"


def tickets_drawn(pg, db):
    """How many numbers intelmq_ticket_seq handed out since its last (re)start
    at MINVALUE (valid as long as it was not restarted in between)."""
    last, called = ticket_seq(pg, db)
    return last - SEQ_MIN + 1 if called else 0


def db_snapshot(pg, db):
    """The rows mailgen may change, as text: directives, sent, ticket_day and
    the state of intelmq_ticket_seq."""
    return {
        "directives": pg.psql(db, "SELECT * FROM directives ORDER BY id"),
        "sent": pg.psql(db, "SELECT * FROM sent ORDER BY id"),
        "ticket_day": pg.psql(db, "SELECT * FROM ticket_day"),
        "seq": pg.psql(db, "SELECT last_value, is_called FROM intelmq_ticket_seq"),
    }


def db_today(pg, db):
    """The ticket day as the database sees it now (YYYYMMDD)."""
    return pg.scalar(db, "SELECT to_char(now(), 'YYYYMMDD')")


def _s(v):
    return "" if v is None else str(v)


def expected_csv_row(fields, defaults):
    """The fallback CSV row of an event inserted with `fields` over `defaults`."""
    f = dict(defaults)
    f.update(fields or {})
    row = []
    for field, _title in FALLBACK_COLUMNS:
        v = f.get(field)
        if field == "time.source" and v is not None:
            t = datetime.datetime.fromisoformat(v).astimezone(datetime.timezone.utc)
            v = t.strftime("%Y-%m-%d %H:%M:%S")
        row.append(_s(v))
    return row


def message_id_domain(msg):
    mid = str(msg["Message-Id"] or "").strip()
    m = re.fullmatch(r"<([^<>@\s]+)@([^<>@\s]+)>", mid)
    if not m:
        raise AssertionError("malformed Message-Id %r" % mid)
    return m.group(2)


def from_address(msg):
    return email.utils.parseaddr(str(msg["From"]))


def ticket_in_subject(msg):
    tickets = TICKET_RE.findall(str(msg["Subject"]))
    if len(tickets) != 1:
        raise AssertionError("expected one ticket in Subject %r" % str(msg["Subject"]))
    return tickets[0]
