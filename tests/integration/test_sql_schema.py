#!/usr/bin/python3
"""sql/notifications.sql against a real PostgreSQL cluster.

Schema objects and privileges, idempotence, the directive trigger (good and
bad directives), the grants of the two working roles, and the upgrade of a
database that has the original intelmq-mailgen schema.
"""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import OMIT, PgCluster, make_directive  # noqa: E402

SQL = harness.NOTIFICATIONS_SQL

CLUSTER = None


def setUpModule():
    global CLUSTER
    CLUSTER = PgCluster()
    unittest.addModuleCleanup(CLUSTER.cleanup)


_db_counter = [0]


def new_db(pg, prefix="db", schema=True):
    _db_counter[0] += 1
    return pg.create_db("%s%d" % (prefix, _db_counter[0]), schema=schema)


# A description of the schema objects that must not change between runs.
SNAPSHOT_QUERIES = {
    "roles": """
        SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin
          FROM pg_roles WHERE rolname LIKE 'eventdb_%' ORDER BY rolname""",
    "database_owner": """
        SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()""",
    "relations": """
        SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relacl::text
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relname NOT LIKE 'mailgen\_%'  -- ours, added
         ORDER BY c.relname""",
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0
           AND NOT a.attisdropped AND c.relname NOT LIKE 'mailgen\_%'  -- ours, added
         ORDER BY c.relname, a.attnum""",
    "indexes": """
        SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
           AND tablename NOT LIKE 'mailgen\_%'  -- ours, added
         ORDER BY 1""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace
           AND conrelid::regclass::text NOT LIKE 'mailgen\_%'  -- ours, added
         ORDER BY 1, 2""",
    "triggers": """
        SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
           AND tgname <> 'directives_notify_mailgen_trigger'  -- ours, added
         ORDER BY tgname""",
    "functions": """
        SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner), p.prosecdef,
               p.provolatile, p.proconfig::text, p.proacl::text, md5(pg_get_functiondef(p.oid))
          FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
           AND p.proname IN ('json_object_as_text_array', 'insert_directive',
                             'directives_from_extra', 'events_insert_directives_for_row')
         ORDER BY 1""",
    "sequences": """
        SELECT sequencename, sequenceowner, min_value, max_value, increment_by, last_value
          FROM pg_sequences WHERE schemaname = 'public'
           AND sequencename NOT LIKE 'mailgen\_%'  -- ours, added
         ORDER BY 1""",
    "types": """
        SELECT t.typname, e.enumlabel FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
         ORDER BY t.typname, e.enumsortorder""",
    "extensions": "SELECT extname FROM pg_extension ORDER BY 1",
    "ticket_day": "SELECT initialized_for_day FROM ticket_day ORDER BY 1",
}


def snapshot(pg, db):
    return {k: pg.psql(db, q) for k, q in SNAPSHOT_QUERIES.items()}


def table_dump(pg, db):
    """All rows of the mailgen tables, for before/after comparisons."""
    return {t: pg.psql(db, "SELECT * FROM %s ORDER BY 1" % t)
            for t in ("events", "directives", "sent", "ticket_day")}


class SchemaObjects(unittest.TestCase):
    """What sql/notifications.sql creates, and that running it twice is harmless."""

    @classmethod
    def setUpClass(cls):
        cls.pg = CLUSTER
        cls.db = new_db(cls.pg, "objects")

    def q(self, sql):
        return self.pg.query(self.db, sql)

    def test_run_twice(self):
        db = new_db(self.pg, "twice")
        pg = self.pg
        eid = pg.insert_event(db, [make_directive()])
        before = snapshot(pg, db)
        rows_before = table_dump(pg, db)
        # Second run, with the DBNAME variable of the original interface,
        # then a third without it.
        for variables in ({"DBNAME": db}, None):
            r = pg.load_file(db, SQL, variables=variables)
            self.assertNotIn("ERROR", r.stderr)
            self.assertNotIn("WARNING", r.stderr)
            self.assertEqual(snapshot(pg, db), before)
            self.assertEqual(table_dump(pg, db), rows_before)
        self.assertEqual(pg.query(db, "SELECT initialized_for_day FROM ticket_day"),
                         [["2016-01-01"]])
        # The trigger still works, exactly once per event.
        eid2 = pg.insert_event(db, [make_directive()])
        self.assertEqual(pg.query(db, "SELECT events_id FROM directives ORDER BY id"),
                         [[str(eid)], [str(eid2)]])

    def test_run_on_second_database(self):
        # Roles are cluster-wide: a second event database in the same
        # cluster reuses them.
        db = new_db(self.pg, "second")
        self.assertEqual(self.pg.scalar(db, "SELECT count(*) FROM ticket_day"), "1")

    def test_roles(self):
        rows = self.q("""SELECT rolname, rolsuper, rolinherit, rolcreatedb, rolcanlogin,
                                rolcreaterole
                           FROM pg_roles WHERE rolname LIKE 'eventdb_%' ORDER BY 1""")
        # NOSUPERUSER NOINHERIT NOCREATEDB NOLOGIN as in the original;
        # CREATEROLE only where the original's eventdb_owner had it.
        self.assertEqual(rows, [
            ["eventdb_insert", "f", "f", "f", "f", "f"],
            ["eventdb_owner", "f", "f", "f", "f", "t"],
            ["eventdb_send_notifications", "f", "f", "f", "f", "f"],
        ])
        self.assertEqual(self.pg.scalar(self.db, """
            SELECT pg_get_userbyid(datdba) FROM pg_database
             WHERE datname = current_database()"""), "eventdb_owner")

    def test_owners(self):
        rows = dict(self.q("""
            SELECT relname, pg_get_userbyid(relowner) FROM pg_class
             WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'S')"""))
        for name in ("events", "ticket_day", "sent", "directives", "events_id_seq",
                     "sent_id_seq", "directives_id_seq"):
            self.assertEqual(rows.get(name), "eventdb_owner", name)
        self.assertEqual(rows["intelmq_ticket_seq"], "eventdb_send_notifications")

    def columns(self, table):
        return self.q("""
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
              FROM pg_attribute a
             WHERE a.attrelid = '%s'::regclass AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum""" % table)

    def test_directives_columns(self):
        self.assertEqual(self.columns("directives"), [
            ["id", "bigint", "t"],
            ["events_id", "bigint", "t"],
            ["sent_id", "bigint", "f"],
            ["medium", "character varying(100)", "t"],
            ["recipient_address", "character varying(100)", "t"],
            ["template_name", "character varying(100)", "t"],
            ["notification_format", "character varying(100)", "t"],
            ["event_data_format", "character varying(100)", "t"],
            ["aggregate_identifier", "text[]", "f"],
            ["notification_interval", "interval", "t"],
            ["endpoint", "ip_endpoint", "t"],
            ["inserted_at", "timestamp with time zone", "t"],
        ])
        self.assertEqual(self.pg.scalar(self.db, """
            SELECT column_default FROM information_schema.columns
             WHERE table_name = 'directives' AND column_name = 'inserted_at'"""),
            "CURRENT_TIMESTAMP")
        self.assertIn("nextval('directives_id_seq'", self.pg.scalar(self.db, """
            SELECT column_default FROM information_schema.columns
             WHERE table_name = 'directives' AND column_name = 'id'"""))

    def test_sent_and_ticket_day_columns(self):
        self.assertEqual(self.columns("sent"), [
            ["id", "bigint", "t"],
            ["intelmq_ticket", "character varying(18)", "t"],
            ["sent_at", "timestamp with time zone", "f"],
        ])
        self.assertEqual(self.columns("ticket_day"), [["initialized_for_day", "date", "f"]])
        self.assertEqual(self.q("SELECT * FROM ticket_day"), [["2016-01-01"]])

    def test_constraints(self):
        rows = self.q("""
            SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid)
              FROM pg_constraint
             WHERE conrelid IN ('sent'::regclass, 'directives'::regclass)
             ORDER BY 1, 2, 3""")
        self.assertIn(["sent", "u", "UNIQUE (intelmq_ticket)"], rows)
        self.assertIn(["sent", "p", "PRIMARY KEY (id)"], rows)
        self.assertIn(["directives", "p", "PRIMARY KEY (id)"], rows)
        self.assertIn(["directives", "f",
                       "FOREIGN KEY (events_id) REFERENCES events(id) ON DELETE CASCADE"], rows)
        self.assertIn(["directives", "f",
                       "FOREIGN KEY (sent_id) REFERENCES sent(id) ON DELETE CASCADE"], rows)

    def test_indexes(self):
        idx = dict(self.q("""SELECT indexname, indexdef FROM pg_indexes
                              WHERE tablename = 'directives'"""))
        self.assertIn("(recipient_address, template_name, notification_format, "
                      "event_data_format, aggregate_identifier, inserted_at)",
                      idx["directives_grouping_inserted_at_idx"])
        self.assertIn("(events_id)", idx["directives_events_id_idx"])
        self.assertIn("(sent_id)", idx["directives_sent_id_idx"])
        gist = idx["directives_recipient_group_idx"]
        self.assertIn("USING gist", gist)
        self.assertIn("json_object(aggregate_identifier)", gist)
        self.assertIn("'recipient_group'", gist)
        self.assertIn("gist_trgm_ops", gist)
        self.assertEqual(self.pg.scalar(self.db, """
            SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'"""), "1")

    def test_type_and_sequence(self):
        self.assertEqual(self.pg.scalar(self.db, "SELECT enum_range(NULL::ip_endpoint)"),
                         "{source,destination}")
        self.assertEqual(self.q("""
            SELECT min_value, sequenceowner FROM pg_sequences
             WHERE sequencename = 'intelmq_ticket_seq'"""),
            [["10000001", "eventdb_send_notifications"]])

    def test_functions_and_trigger(self):
        rows = {r[0]: r[1:] for r in self.q("""
            SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner), p.prosecdef,
                   p.provolatile, pg_get_function_result(p.oid), coalesce(p.proconfig::text, '')
              FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace""")}
        self.assertEqual(rows["json_object_as_text_array(jsonb)"],
                         ["eventdb_owner", "f", "i", "text[]", ""])
        self.assertEqual(rows["insert_directive(bigint,jsonb,ip_endpoint)"],
                         ["eventdb_owner", "f", "v", "void", ""])
        self.assertEqual(rows["directives_from_extra(bigint,jsonb)"],
                         ["eventdb_owner", "f", "v", "void", ""])
        owner, secdef, _, result, config = rows["events_insert_directives_for_row()"]
        self.assertEqual((owner, secdef, result), ("eventdb_owner", "t", "trigger"))
        self.assertIn("search_path=pg_catalog, public, pg_temp", config)
        self.assertEqual(self.pg.scalar(self.db, """
            SELECT has_function_privilege('eventdb_insert',
                   'events_insert_directives_for_row()', 'EXECUTE')"""), "t")
        trig = self.pg.scalar(self.db, """
            SELECT pg_get_triggerdef(oid) FROM pg_trigger
             WHERE tgname = 'events_insert_directive_trigger'""")
        self.assertEqual(trig, "CREATE TRIGGER events_insert_directive_trigger AFTER INSERT "
                         "ON public.events FOR EACH ROW EXECUTE FUNCTION "
                         "events_insert_directives_for_row()")
        self.assertEqual(self.pg.scalar(self.db, """
            SELECT json_object_as_text_array('{"b": 2, "a": "x", "c": {"d": null}}')"""),
            '{{a,x},{b,2},{c,"{\\"d\\": null}"}}')
        self.assertEqual(self.pg.scalar(self.db, "SELECT json_object_as_text_array(NULL)"), "{}")

    def test_table_privileges(self):
        checks = [
            ("eventdb_insert", "events", "INSERT", "t"),
            ("eventdb_insert", "events", "SELECT", "f"),
            ("eventdb_insert", "directives", "SELECT", "f"),
            ("eventdb_insert", "directives", "INSERT", "f"),
            ("eventdb_send_notifications", "events", "SELECT", "t"),
            ("eventdb_send_notifications", "events", "INSERT", "f"),
            ("eventdb_send_notifications", "events", "UPDATE", "f"),
            ("eventdb_send_notifications", "directives", "SELECT", "t"),
            ("eventdb_send_notifications", "directives", "UPDATE", "t"),
            ("eventdb_send_notifications", "directives", "INSERT", "f"),
            ("eventdb_send_notifications", "directives", "DELETE", "f"),
            ("eventdb_send_notifications", "sent", "SELECT", "t"),
            ("eventdb_send_notifications", "sent", "INSERT", "t"),
            ("eventdb_send_notifications", "sent", "UPDATE", "f"),
            ("eventdb_send_notifications", "ticket_day", "SELECT", "t"),
            ("eventdb_send_notifications", "ticket_day", "UPDATE", "t"),
            ("eventdb_send_notifications", "ticket_day", "INSERT", "f"),
        ]
        for role, table, priv, expected in checks:
            with self.subTest(role=role, table=table, priv=priv):
                self.assertEqual(self.pg.scalar(self.db, "SELECT has_table_privilege(%s, %s, %s)"
                                                % (harness.sql_literal(role),
                                                   harness.sql_literal(table),
                                                   harness.sql_literal(priv))), expected)
        for role, seq, expected in [("eventdb_insert", "events_id_seq", "t"),
                                    ("eventdb_send_notifications", "sent_id_seq", "t"),
                                    ("eventdb_send_notifications", "intelmq_ticket_seq", "t")]:
            with self.subTest(role=role, seq=seq):
                self.assertEqual(self.pg.scalar(self.db,
                                 "SELECT has_sequence_privilege('%s', '%s', 'USAGE')"
                                 % (role, seq)), expected)


class DirectiveTrigger(unittest.TestCase):
    """The trigger that copies extra.certbund.source_directives into directives."""

    @classmethod
    def setUpClass(cls):
        cls.pg = CLUSTER
        cls.db = new_db(cls.pg, "trigger")

    def directives_of(self, eid, cols="recipient_address, aggregate_identifier, "
                                      "notification_interval, endpoint, sent_id"):
        return self.pg.query(self.db, "SELECT %s FROM directives WHERE events_id = %d ORDER BY id"
                             % (cols, eid))

    def insert(self, directives=None, **kw):
        """Insert an event; return (event id, psql stderr)."""
        r = self.pg.insert_event_run(self.db, directives, **kw)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("ERROR", r.stderr)
        return int(r.stdout.strip()), r.stderr

    def event_exists(self, eid):
        return self.pg.scalar(self.db, "SELECT count(*) FROM events WHERE id = %d" % eid) == "1"

    def test_good_directives(self):
        eid, err = self.insert([
            make_directive(aggregate_identifier={"time.observation": "2026-11-26T06:00:00+00:00",
                                                 "source.asn": 64496},
                           notification_interval=86400),
            make_directive(recipient_address="cert@example.net", notification_interval=3600,
                           aggregate_identifier={}),
        ])
        self.assertEqual(err, "")
        self.assertEqual(self.directives_of(eid), [
            ["abuse@as64496.example",
             '{{source.asn,64496},{time.observation,2026-11-26T06:00:00+00:00}}',
             "24:00:00", "source", ""],
            ["cert@example.net", "{}", "01:00:00", "source", ""],
        ])
        self.assertEqual(self.pg.query(self.db, """
            SELECT medium, template_name, notification_format, event_data_format,
                   notification_interval = interval '1 day',
                   inserted_at <= now() AND inserted_at > now() - interval '1 hour'
              FROM directives WHERE events_id = %d ORDER BY id LIMIT 1""" % eid),
            [["email", "test-template.txt", "shadowserver", "csv_test", "t", "t"]])

    def test_interval_defaults_and_forms(self):
        cases = [(OMIT, "00:00:00"), (None, "00:00:00"), (0, "00:00:00"), ("0", "00:00:00"),
                 (86400, "24:00:00"), (86400.0, "24:00:00"), ("86400.0", "24:00:00"),
                 ("86400", "24:00:00"), (8.64e4, "24:00:00"), (" 3600 ", "01:00:00"),
                 (-5, "-00:00:05")]
        for value, expected in cases:
            with self.subTest(notification_interval=value):
                eid, err = self.insert([make_directive(notification_interval=value)])
                self.assertEqual(err, "")
                self.assertEqual(self.directives_of(eid, "notification_interval"), [[expected]])

    def test_interval_minus_one_stores_nothing(self):
        for value in (-1, "-1", -1.0, "-1.0"):
            with self.subTest(notification_interval=value):
                eid, err = self.insert([make_directive(notification_interval=value)])
                self.assertEqual(err, "")
                self.assertTrue(self.event_exists(eid))
                self.assertEqual(self.directives_of(eid), [])

    def test_missing_required_field_is_skipped(self):
        for field in ("medium", "recipient_address", "template_name", "notification_format",
                      "event_data_format"):
            for value in (OMIT, None):
                with self.subTest(field=field, value=value):
                    eid, err = self.insert([make_directive(**{field: value}),
                                            make_directive(recipient_address="ok@example.org")])
                    self.assertEqual(err, "")
                    self.assertEqual(self.directives_of(eid, "recipient_address"),
                                     [["ok@example.org"]])

    def test_no_directives(self):
        for kw in ({}, {"extra": {"certbund": {}}}, {"extra": {"other": 1}},
                   {"directives": []}, {"directives": None},
                   {"extra": {"certbund": {"source_directives": None}}},
                   {"extra": {"certbund": "text"}}, {"fields": {"extra": None}},
                   {"fields": {"extra": [1, 2]}}, {"fields": {"extra": "scalar"}}):
            with self.subTest(**kw):
                eid, err = self.insert(**kw)
                self.assertEqual(err, "")
                self.assertTrue(self.event_exists(eid))
                self.assertEqual(self.directives_of(eid), [])

    def test_bad_directives_are_skipped_with_warning(self):
        good = make_directive(recipient_address="good@example.org")
        bad = {
            "fractional interval": (make_directive(notification_interval=86400.5),
                                    "not a whole number"),
            "fractional interval string": (make_directive(notification_interval="0.5"),
                                           "not a whole number"),
            "interval abc": (make_directive(notification_interval="abc"), "numeric"),
            "interval object": (make_directive(notification_interval={"seconds": 1}),
                                "notification_interval is a JSON object"),
            "interval boolean": (make_directive(notification_interval=True),
                                 "notification_interval is a JSON boolean"),
            "interval huge": (make_directive(notification_interval=1e30), "SQLSTATE 22"),
            "interval NaN": (make_directive(notification_interval="NaN"), "not a whole number"),
            "interval Infinity": (make_directive(notification_interval="Infinity"),
                                  "not a whole number"),
            "long address": (make_directive(recipient_address="a" * 290 + "@example.org"),
                             "recipient_address is 302 characters long"),
            "long template": (make_directive(template_name="t" * 101),
                              "template_name is 101 characters long"),
            "address number": (make_directive(recipient_address=42),
                               "recipient_address is a JSON number"),
            "medium object": (make_directive(medium={"x": 1}), "medium is a JSON object"),
            "aggregate array": (make_directive(aggregate_identifier=["source.asn", 64496]),
                                "aggregate_identifier is a JSON array"),
            "aggregate string": (make_directive(aggregate_identifier="source.asn"),
                                 "aggregate_identifier is a JSON string"),
            "directive string": ("just a string", "the directive is a JSON string"),
            "directive array": ([1, 2], "the directive is a JSON array"),
            "directive null": (None, "the directive is a JSON null"),
            "huge aggregate": (make_directive(aggregate_identifier={
                "k%d" % i: os.urandom(320).hex() for i in range(40)}), "SQLSTATE 54"),
        }
        for name, (directive, message) in bad.items():
            with self.subTest(name):
                eid, err = self.insert([good, directive, good])
                self.assertTrue(self.event_exists(eid))
                self.assertEqual(self.directives_of(eid, "recipient_address"),
                                 [["good@example.org"], ["good@example.org"]])
                self.assertEqual(err.count("WARNING"), 1, err)
                self.assertIn("WARNING:  mailgen: event %d: directive skipped: " % eid, err)
                self.assertIn(message, err)

    def test_source_directives_not_an_array(self):
        for value, jtype in (({"a": make_directive()}, "object"), ("x", "string"),
                             (5, "number"), (True, "boolean")):
            with self.subTest(source_directives=value):
                eid, err = self.insert(value)
                self.assertTrue(self.event_exists(eid))
                self.assertEqual(self.directives_of(eid), [])
                self.assertIn("WARNING:  mailgen: event %d: no directives stored: "
                              "certbund.source_directives is a JSON %s, not an array"
                              % (eid, jtype), err)

    def test_many_events_in_one_transaction(self):
        directives = [make_directive(), make_directive(notification_interval="x")]
        ids = self.pg.insert_events(self.db, [{"directives": directives}] * 200)
        self.assertEqual(len(ids), 200)
        self.assertEqual(self.pg.scalar(self.db, """
            SELECT count(*) FROM directives WHERE events_id BETWEEN %d AND %d"""
                                        % (ids[0], ids[-1])), "200")

    def _notifications(self, sql):
        """Run sql in a session that LISTENs on 'mailgen'; return the notifications psql saw."""
        r = self.pg.psql_run(self.db, "LISTEN mailgen;\n" + sql + "\nSELECT 1;\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        return [l for l in r.stdout.splitlines() if "Asynchronous notification" in l]

    def test_notify_once_per_transaction(self):
        # Three events with two directives each in one transaction: one wake-up.
        sql = "BEGIN;\n" + "".join(
            self.pg.event_insert_sql([make_directive(), make_directive(recipient_address="x@y.example")],
                                     returning=False) for _ in range(3)) + "COMMIT;"
        got = self._notifications(sql)
        self.assertEqual(len(got), 1, got)
        self.assertIn('"mailgen"', got[0])

    def test_notify_channel_setting(self):
        self.pg.psql(self.db, "ALTER ROLE postgres IN DATABASE %s SET mailgen.notify_channel = 'other'"
                     % harness.sql_ident(self.db))
        try:
            r = self.pg.psql_run(self.db, "LISTEN other;\n" + self.pg.event_insert_sql(
                [make_directive()], returning=False) + "SELECT 1;\n")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn('Asynchronous notification "other"', r.stdout)
        finally:
            self.pg.psql(self.db, "ALTER ROLE postgres IN DATABASE %s RESET mailgen.notify_channel"
                         % harness.sql_ident(self.db))

    def test_no_notify_without_directives(self):
        self.assertEqual(self._notifications(self.pg.event_insert_sql(None, returning=False)), [])

    def test_delete_event_cascades(self):
        eid, _ = self.insert([make_directive()])
        self.pg.psql(self.db, "DELETE FROM events WHERE id = %d" % eid)
        self.assertEqual(self.directives_of(eid), [])

    def test_json_extra_column(self):
        # Some IntelMQ versions create "extra" as json, not jsonb.
        db = new_db(self.pg, "jsonextra", schema=False)
        self.pg.load_file(db, harness.EVENTS_SQL)
        self.pg.psql(db, "ALTER TABLE events ALTER COLUMN extra TYPE json;")
        self.pg.load_file(db, SQL)
        eid = self.pg.insert_event(db, [make_directive(), make_directive(medium=1)])
        self.assertEqual(self.pg.scalar(db, "SELECT count(*) FROM directives WHERE events_id = %d"
                                        % eid), "1")
        # json that jsonb cannot hold costs the directives, not the event.
        r = self.pg.psql_run(db, """INSERT INTO events (extra) VALUES
            ('{"certbund": {"source_directives": []}, "x": "\\u0000"}') RETURNING id;""")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no directives stored: extra is not valid jsonb", r.stderr)


class RoleGrants(unittest.TestCase):
    """The two working roles, used through real login roles (trust auth)."""

    @classmethod
    def setUpClass(cls):
        cls.pg = CLUSTER
        cls.db = new_db(cls.pg, "grants")
        cls.intelmq = cls.pg.create_login_role("test_intelmq", ["eventdb_insert"])
        cls.mailgen = cls.pg.create_login_role("test_mailgen", ["eventdb_send_notifications"])

    def as_role(self, role, sql):
        return self.pg.psql_run(self.db, sql, user=role)

    def test_intelmq_inserts_events_through_the_trigger(self):
        before = int(self.pg.scalar(self.db, "SELECT count(*) FROM directives"))
        r = self.pg.insert_event_run(self.db, [make_directive(),
                                               make_directive(notification_interval=0.25)],
                                     user=self.intelmq)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("WARNING:  mailgen: event", r.stderr)
        self.assertEqual(int(self.pg.scalar(self.db, "SELECT count(*) FROM directives")),
                         before + 1)

    def test_intelmq_cannot_read_or_touch_directives(self):
        for sql in ("SELECT count(*) FROM directives;", "SELECT count(*) FROM events;",
                    "INSERT INTO directives (events_id) VALUES (1);",
                    "DELETE FROM sent;",
                    "SELECT insert_directive(1, '%s', 'source');"
                    % json.dumps(make_directive()),
                    "ALTER SEQUENCE intelmq_ticket_seq RESTART;"):
            with self.subTest(sql=sql):
                r = self.as_role(self.intelmq, sql)
                self.assertNotEqual(r.returncode, 0)
                self.assertRegex(r.stderr, "permission denied|must be owner")

    def test_mailgen_workflow(self):
        eid = self.pg.insert_event(self.db, [make_directive(recipient_address="wf@example.org")])
        did = self.pg.scalar(self.db, "SELECT id FROM directives WHERE events_id = %d" % eid)
        m = self.mailgen
        # Pending directives with their events, claimed like the daemon does.
        out = self.pg.psql(self.db, """
            BEGIN;
            SELECT d.id, e."source.ip"
              FROM directives d JOIN events e ON e.id = d.events_id
             WHERE d.sent_id IS NULL AND d.recipient_address = 'wf@example.org'
               FOR UPDATE OF d SKIP LOCKED;
            COMMIT;""", user=m)
        self.assertEqual(out.split(), ["%s|192.0.2.10" % did])
        # Ticket numbers: the daily restart needs ownership of the sequence.
        out = self.pg.psql(self.db, """
            SELECT initialized_for_day FROM ticket_day;
            ALTER SEQUENCE intelmq_ticket_seq RESTART;
            UPDATE ticket_day SET initialized_for_day = DATE '2026-11-26';
            SELECT nextval('intelmq_ticket_seq');
            SELECT nextval('intelmq_ticket_seq');""", user=m)
        self.assertEqual(out.split()[-2:], ["10000001", "10000002"])
        sent = self.pg.psql(self.db, """
            INSERT INTO sent (intelmq_ticket, sent_at)
                 VALUES ('20261126-10000001', now()) RETURNING id;""", user=m).strip()
        self.pg.psql(self.db, "UPDATE directives SET sent_id = %s WHERE id = %s;" % (sent, did),
                     user=m)
        self.assertEqual(self.pg.query(self.db, """
            SELECT s.intelmq_ticket FROM directives d JOIN sent s ON s.id = d.sent_id
             WHERE d.id = %s""" % did), [["20261126-10000001"]])
        self.assertEqual(self.pg.scalar(self.db, "SELECT initialized_for_day FROM ticket_day"),
                         "2026-11-26")
        # A ticket number is unique forever.
        r = self.as_role(m, "INSERT INTO sent (intelmq_ticket) VALUES ('20261126-10000001');")
        self.assertIn("duplicate key", r.stderr)

    def test_mailgen_role_uses_outbox_and_failure_tables(self):
        """mailgen-c's own tables work for a member of eventdb_send_notifications."""
        eid = self.pg.insert_event(self.db, [make_directive(recipient_address="ob@example.org")])
        did = self.pg.scalar(self.db, "SELECT id FROM directives WHERE events_id = %d" % eid)
        out = self.pg.psql(self.db, """
            INSERT INTO mailgen_outbox (intelmq_ticket, message_id, recipient_address,
                template_name, notification_format, event_data_format, directive_ids,
                envelope_from, envelope_to, message)
              VALUES ('20261126-10000009', '<x@example.org>', 'ob@example.org', 't', 'n',
                      'e', ARRAY[%(d)s]::bigint[], 'c@example.org', ARRAY['ob@example.org'],
                      'Subject: x');
            INSERT INTO mailgen_failed_groups (recipient_address, template_name,
                notification_format, event_data_format, state, reason, directive_ids)
              VALUES ('ob@example.org', 't', 'n', 'e', 'failed', 'r', ARRAY[%(d)s]::bigint[])
              RETURNING id;
            INSERT INTO mailgen_dropped_directives (directive_id, reason) VALUES (%(d)s, 'r');
            DELETE FROM mailgen_dropped_directives;
            DELETE FROM mailgen_failed_groups;
            DELETE FROM mailgen_outbox RETURNING intelmq_ticket;""" % {"d": did},
                           user=self.mailgen)
        self.assertIn("20261126-10000009", out)
        # one failure row per group key, NULL aggregate identifiers included
        r = self.as_role(self.mailgen, """
            INSERT INTO mailgen_failed_groups (recipient_address, template_name,
                notification_format, event_data_format, state, reason, directive_ids)
              VALUES ('a', 't', 'n', 'e', 'failed', 'r', '{}'), ('a', 't', 'n', 'e', 'failed',
                      'r', '{}');""")
        self.assertIn("duplicate key", r.stderr)
        # IntelMQ's role cannot touch them
        r = self.as_role(self.intelmq, "DELETE FROM mailgen_outbox;")
        self.assertIn("permission denied", r.stderr)

    def test_statements_prepared_again_when_the_session_forgot_them(self):
        """mailgen prepares its per-mail statements once per connection; a
        pooler can hand it a server session without them (DEALLOCATE ALL
        here): the statement is prepared again and the ticket drawn."""
        cfg = harness.write_config(harness.make_config(pg=self.pg, db=self.db,
                                                       user=self.mailgen))
        r = subprocess.run([os.path.join(harness.BUILD_DIR, "mg-db-stmt-test"), cfg],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        first, second = r.stdout.split()
        self.assertRegex(first, r"^\d{8}-\d{8}$")
        (day1, n1), (day2, n2) = first.split("-"), second.split("-")
        # the next number, or the first of a new day at midnight
        self.assertEqual(int(n2), int(n1) + 1 if day2 == day1 else 10000001)

    def test_mailgen_cannot_write_events_or_delete(self):
        for sql in ("INSERT INTO events (extra) VALUES ('{}');",
                    "UPDATE events SET raw = 'x';",
                    "DELETE FROM directives;",
                    "INSERT INTO directives (events_id) VALUES (1);",
                    "DELETE FROM sent;",
                    "INSERT INTO ticket_day VALUES (CURRENT_DATE);"):
            with self.subTest(sql=sql):
                r = self.as_role(self.mailgen, sql)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn("permission denied", r.stderr)


# --------------------------------------------------------------- upgrade

# The schema as the original intelmq-mailgen notifications.sql leaves it:
# plain CREATE statements, no idempotence, no hardening of the trigger.
ORIGINAL_SCHEMA = r"""
BEGIN;
CREATE ROLE eventdb_owner NOLOGIN NOSUPERUSER NOINHERIT NOCREATEDB CREATEROLE;
CREATE ROLE eventdb_insert NOLOGIN NOSUPERUSER NOINHERIT NOCREATEDB CREATEROLE;
CREATE ROLE eventdb_send_notifications NOLOGIN NOSUPERUSER NOINHERIT NOCREATEDB CREATEROLE;
ALTER DATABASE :"DBNAME" OWNER TO eventdb_owner;
ALTER TABLE events OWNER TO eventdb_owner;
CREATE TYPE ip_endpoint AS ENUM ('source', 'destination');
CREATE SEQUENCE intelmq_ticket_seq MINVALUE 10000001;
ALTER SEQUENCE intelmq_ticket_seq OWNER TO eventdb_send_notifications;

SET ROLE eventdb_owner;
GRANT INSERT ON events TO eventdb_insert;
GRANT USAGE ON events_id_seq TO eventdb_insert;
GRANT SELECT ON events TO eventdb_send_notifications;

CREATE TABLE ticket_day (initialized_for_day DATE);
INSERT INTO ticket_day (initialized_for_day) VALUES ('20160101');
GRANT SELECT, UPDATE ON ticket_day TO eventdb_send_notifications;

CREATE TABLE sent (
    id BIGSERIAL UNIQUE PRIMARY KEY,
    intelmq_ticket VARCHAR(18) UNIQUE NOT NULL,
    sent_at TIMESTAMP WITH TIME ZONE
);
GRANT SELECT, INSERT ON sent TO eventdb_send_notifications;
GRANT USAGE ON sent_id_seq TO eventdb_send_notifications;

CREATE TABLE directives (
    id BIGSERIAL UNIQUE PRIMARY KEY,
    events_id BIGINT NOT NULL,
    sent_id BIGINT,
    medium VARCHAR(100) NOT NULL,
    recipient_address VARCHAR(100) NOT NULL,
    template_name VARCHAR(100) NOT NULL,
    notification_format VARCHAR(100) NOT NULL,
    event_data_format VARCHAR(100) NOT NULL,
    aggregate_identifier TEXT[][],
    notification_interval INTERVAL NOT NULL,
    endpoint ip_endpoint NOT NULL,
    inserted_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (events_id) REFERENCES events(id) ON DELETE CASCADE,
    FOREIGN KEY (sent_id) REFERENCES sent(id) ON DELETE CASCADE
);
CREATE INDEX directives_grouping_inserted_at_idx
    ON directives (recipient_address, template_name, notification_format,
                   event_data_format, aggregate_identifier, inserted_at);
CREATE INDEX directives_events_id_idx ON directives (events_id);
CREATE INDEX directives_sent_id_idx ON directives (sent_id);
CREATE EXTENSION pg_trgm;
CREATE INDEX directives_recipient_group_idx ON directives
    USING gist ((json_object(aggregate_identifier) ->> 'recipient_group') gist_trgm_ops);
GRANT SELECT, UPDATE ON directives TO eventdb_send_notifications;

CREATE FUNCTION json_object_as_text_array(obj JSONB) RETURNS TEXT[][] AS $$
DECLARE
    a TEXT[][] := '{}';
    k TEXT;
    v TEXT;
BEGIN
    FOR k, v IN SELECT * FROM jsonb_each_text(obj) ORDER BY 1 LOOP
        a := a || ARRAY[ARRAY[k, v]];
    END LOOP;
    RETURN a;
END $$ LANGUAGE plpgsql IMMUTABLE;

CREATE FUNCTION insert_directive(event_id BIGINT, directive JSONB, endpoint ip_endpoint)
RETURNS VOID AS $$
DECLARE
    ivl INTERVAL := coalesce(((directive ->> 'notification_interval')::INT)
                             * INTERVAL '1 second', INTERVAL '0 second');
BEGIN
    IF directive ->> 'medium' IS NOT NULL
       AND directive ->> 'recipient_address' IS NOT NULL
       AND directive ->> 'template_name' IS NOT NULL
       AND directive ->> 'notification_format' IS NOT NULL
       AND directive ->> 'event_data_format' IS NOT NULL
       AND ivl != INTERVAL '-1 second'
    THEN
        INSERT INTO directives (events_id, medium, recipient_address, template_name,
                                notification_format, event_data_format,
                                aggregate_identifier, notification_interval, endpoint)
        VALUES (event_id, directive ->> 'medium', directive ->> 'recipient_address',
                directive ->> 'template_name', directive ->> 'notification_format',
                directive ->> 'event_data_format',
                json_object_as_text_array(directive -> 'aggregate_identifier'),
                ivl, endpoint);
    END IF;
END $$ LANGUAGE plpgsql VOLATILE;

CREATE FUNCTION directives_from_extra(event_id BIGINT, extra JSONB) RETURNS VOID AS $$
DECLARE
    d JSONB;
BEGIN
    IF extra -> 'certbund' -> 'source_directives' IS NOT NULL THEN
        FOR d IN SELECT * FROM jsonb_array_elements(extra -> 'certbund' -> 'source_directives')
        LOOP
            PERFORM insert_directive(event_id, d, 'source');
        END LOOP;
    END IF;
END $$ LANGUAGE plpgsql VOLATILE;

CREATE FUNCTION events_insert_directives_for_row() RETURNS TRIGGER AS $$
BEGIN
    PERFORM directives_from_extra(NEW.id, NEW.extra);
    RETURN NEW;
END $$ LANGUAGE plpgsql VOLATILE EXTERNAL SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION events_insert_directives_for_row() TO eventdb_insert;

CREATE TRIGGER events_insert_directive_trigger AFTER INSERT ON events
    FOR EACH ROW EXECUTE PROCEDURE events_insert_directives_for_row();
RESET ROLE;
COMMIT;
"""


class UpgradeFromOriginal(unittest.TestCase):
    """A database set up with the original schema, with data, then our file."""

    @classmethod
    def setUpClass(cls):
        # Own cluster: the original script creates the roles unconditionally.
        cls.pg = PgCluster()
        cls.addClassCleanup(cls.pg.cleanup)
        cls.db = cls.pg.create_db("legacy", schema=False)
        cls.pg.load_file(cls.db, harness.EVENTS_SQL)
        # Deployments of the original date from PostgreSQL <= 14, where
        # everybody could create objects in "public" (pg_upgrade keeps that).
        # On a fresh PostgreSQL 15 database the original file fails: its
        # SET ROLE eventdb_owner (NOINHERIT) cannot create tables there.
        cls.pg.psql(cls.db, "GRANT CREATE ON SCHEMA public TO PUBLIC;")
        path = os.path.join(cls.pg.base, "original.sql")
        with open(path, "w") as f:
            f.write(ORIGINAL_SCHEMA)
        cls.pg.load_file(cls.db, path, variables={"DBNAME": cls.db})

    def test_upgrade_keeps_data_and_hardens_trigger(self):
        pg, db = self.pg, self.db
        # Life under the original schema: events, directives, a sent mail.
        ids = pg.insert_events(db, [
            {"directives": [make_directive(aggregate_identifier={"source.asn": 64496,
                                                                 "recipient_group": "isp"},
                                           notification_interval=7200),
                            make_directive(recipient_address="b@example.org")]},
            {"directives": [make_directive(recipient_address="c@example.org")]},
        ])
        pg.psql(db, """
            SELECT setval('intelmq_ticket_seq', 10000042);
            UPDATE ticket_day SET initialized_for_day = DATE '2026-11-25';
            INSERT INTO sent (intelmq_ticket, sent_at)
                 VALUES ('20261125-10000042', '2026-11-25 10:00:00+00');
            UPDATE directives SET sent_id = currval('sent_id_seq')
             WHERE recipient_address = 'b@example.org';""")
        # The original trigger makes the INSERT fail on a bad directive.
        r = pg.insert_event_run(db, [make_directive(notification_interval="86400.0")])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("invalid input syntax for type integer", r.stderr)
        intelmq = pg.create_login_role("legacy_intelmq", ["eventdb_insert"])
        mailgen = pg.create_login_role("legacy_mailgen", ["eventdb_send_notifications"])

        rows_before = table_dump(pg, db)
        self.assertEqual(len(rows_before["directives"].splitlines()), 3)
        snap_before = snapshot(pg, db)

        r = pg.load_file(db, SQL)
        self.assertNotIn("ERROR", r.stderr)
        self.assertEqual(table_dump(pg, db), rows_before)
        snap_after = snapshot(pg, db)
        for key in snap_before:
            if key != "functions":
                self.assertEqual(snap_after[key], snap_before[key], key)
        self.assertIn("search_path=pg_catalog", snap_after["functions"])
        self.assertEqual(pg.scalar(db, "SELECT last_value FROM intelmq_ticket_seq"), "10000042")
        # Running it again changes nothing.
        pg.load_file(db, SQL)
        self.assertEqual(snapshot(pg, db), snap_after)
        self.assertEqual(table_dump(pg, db), rows_before)

        # Hardened behaviour, also for the non-superuser IntelMQ role.
        r = pg.insert_event_run(db, [make_directive(notification_interval="86400.0"),
                                     make_directive(notification_interval="abc")], user=intelmq)
        self.assertEqual(r.returncode, 0, r.stderr)
        eid = int(pg.scalar(db, "SELECT max(id) FROM events"))
        self.assertGreater(eid, ids[-1])
        self.assertIn("WARNING:  mailgen: event %d: directive skipped" % eid, r.stderr)
        self.assertEqual(pg.query(db, """
            SELECT notification_interval = interval '1 day' FROM directives
             WHERE events_id = %d""" % eid), [["t"]])
        # Mailgen still owns the ticket sequence and can work with old rows.
        out = pg.psql(db, """
            SELECT count(*) FROM directives WHERE sent_id IS NULL;
            ALTER SEQUENCE intelmq_ticket_seq RESTART;
            SELECT nextval('intelmq_ticket_seq');""", user=mailgen)
        self.assertEqual(out.split(), ["3", "10000001"])


if __name__ == "__main__":
    harness.run_tests()
