-- sql/notifications.sql -- the notification part of an IntelMQ event database.
--
-- Run it as a database superuser on a database that already has IntelMQ's
-- "events" table:
--
--     psql -v ON_ERROR_STOP=1 -f sql/notifications.sql intelmq-events
--
-- The original intelmq-mailgen file needed "-v DBNAME=<db>"; this one finds
-- the database itself (current_database()).  Passing DBNAME still works, the
-- variable is simply not used.
--
-- What it creates (same names, types and privileges as intelmq-mailgen's
-- notifications.sql, so existing tools keep working):
--
--   roles     eventdb_owner, eventdb_insert, eventdb_send_notifications
--   type      ip_endpoint ('source', 'destination')
--   sequence  intelmq_ticket_seq (owned by eventdb_send_notifications)
--   tables    ticket_day, sent, directives (+ indexes, pg_trgm)
--   functions json_object_as_text_array, insert_directive,
--             directives_from_extra, events_insert_directives_for_row
--   trigger   events_insert_directive_trigger AFTER INSERT ON events
--   mailgen-c tables mailgen_outbox, mailgen_failed_groups,
--             mailgen_dropped_directives, and trigger
--             directives_notify_mailgen_trigger
--
-- The file is safe to run more than once and on a database that has the
-- original intelmq-mailgen schema: existing roles, types, tables, indexes
-- and rows are left alone; the functions and the trigger are replaced by
-- the versions below.  Everything happens in one transaction.
--
-- Differences to the original (see docs/database.md):
--   * A bad directive never makes the INSERT into "events" fail.  It is
--     skipped with a WARNING naming the event id and the problem; the event
--     and its other directives are stored.
--   * notification_interval may be written as a float with an integral
--     value (86400.0, "86400.0"); fractional values are rejected.
--   * The SECURITY DEFINER trigger function runs with a fixed search_path.
--   * eventdb_insert and eventdb_send_notifications are created without
--     CREATEROLE (they never need it; existing roles are not changed).

\set ON_ERROR_STOP on

BEGIN;

-- ------------------------------------------------------------------ roles

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                    WHERE rolname = 'eventdb_owner') THEN
        CREATE ROLE eventdb_owner
            NOLOGIN NOSUPERUSER NOINHERIT NOCREATEDB CREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                    WHERE rolname = 'eventdb_insert') THEN
        CREATE ROLE eventdb_insert
            NOLOGIN NOSUPERUSER NOINHERIT NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                    WHERE rolname = 'eventdb_send_notifications') THEN
        CREATE ROLE eventdb_send_notifications
            NOLOGIN NOSUPERUSER NOINHERIT NOCREATEDB NOCREATEROLE;
    END IF;
END
$roles$;

DO $owner$
BEGIN
    EXECUTE pg_catalog.format('ALTER DATABASE %I OWNER TO eventdb_owner',
                              pg_catalog.current_database());
END
$owner$;

ALTER TABLE events OWNER TO eventdb_owner;

GRANT INSERT ON events TO eventdb_insert;
GRANT USAGE ON events_id_seq TO eventdb_insert;
GRANT SELECT ON events TO eventdb_send_notifications;

-- ------------------------------------------------------- type, sequence

DO $type$
BEGIN
    IF pg_catalog.to_regtype('ip_endpoint') IS NULL THEN
        CREATE TYPE ip_endpoint AS ENUM ('source', 'destination');
    END IF;
END
$type$;

-- Ticket numbers are YYYYMMDD-NNNNNNNN; mailgen restarts the sequence every
-- day, which needs ownership.
CREATE SEQUENCE IF NOT EXISTS intelmq_ticket_seq MINVALUE 10000001;
ALTER SEQUENCE intelmq_ticket_seq OWNER TO eventdb_send_notifications;

-- ------------------------------------------------------------------ tables

-- The day intelmq_ticket_seq was last restarted for.  Exactly one row.
CREATE TABLE IF NOT EXISTS ticket_day (
    initialized_for_day DATE
);
ALTER TABLE ticket_day OWNER TO eventdb_owner;
INSERT INTO ticket_day (initialized_for_day)
SELECT DATE '2016-01-01'
 WHERE NOT EXISTS (SELECT 1 FROM ticket_day);
GRANT SELECT, UPDATE ON ticket_day TO eventdb_send_notifications;

-- One row per mail that was handed to the SMTP server.
CREATE TABLE IF NOT EXISTS sent (
    id BIGSERIAL UNIQUE PRIMARY KEY,
    intelmq_ticket VARCHAR(18) UNIQUE NOT NULL,
    sent_at TIMESTAMP WITH TIME ZONE
);
ALTER TABLE sent OWNER TO eventdb_owner;
GRANT SELECT, INSERT ON sent TO eventdb_send_notifications;
GRANT USAGE ON sent_id_seq TO eventdb_send_notifications;

-- One row per notification directive of an event; sent_id is NULL while
-- the directive is pending.
CREATE TABLE IF NOT EXISTS directives (
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
ALTER TABLE directives OWNER TO eventdb_owner;

CREATE INDEX IF NOT EXISTS directives_grouping_inserted_at_idx
    ON directives (recipient_address, template_name, notification_format,
                   event_data_format, aggregate_identifier, inserted_at);
CREATE INDEX IF NOT EXISTS directives_events_id_idx
    ON directives (events_id);
CREATE INDEX IF NOT EXISTS directives_sent_id_idx
    ON directives (sent_id);

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS directives_recipient_group_idx
    ON directives
 USING gist ((json_object(aggregate_identifier) ->> 'recipient_group')
             gist_trgm_ops);

GRANT SELECT, UPDATE ON directives TO eventdb_send_notifications;

-- --------------------------------------------------------------- functions

-- {"b": 2, "a": "x"}  ->  {{a,x},{b,2}}  (sorted by key; NULL -> {})
CREATE OR REPLACE FUNCTION json_object_as_text_array(obj JSONB)
RETURNS TEXT[][]
AS $$
DECLARE
    result TEXT[][] := '{}'::TEXT[][];
    k TEXT;
    v TEXT;
BEGIN
    FOR k, v IN SELECT e.key, e.value
                  FROM pg_catalog.jsonb_each_text(obj) AS e
                 ORDER BY e.key
    LOOP
        result := result || ARRAY[ARRAY[k, v]];
    END LOOP;
    RETURN result;
END
$$ LANGUAGE plpgsql IMMUTABLE;


-- Store one directive of an event.
--
-- Silently ignored, as in the original: a directive without medium,
-- recipient_address, template_name, notification_format or
-- event_data_format (absent or JSON null), and one whose
-- notification_interval is -1 ("do not notify").
--
-- Skipped with a WARNING: everything else that cannot be stored as it is
-- (not an object, a field of the wrong JSON type or too long for its
-- column, an interval that is not a whole number of seconds, an
-- aggregate_identifier that is not an object, ...).  Errors that say
-- something about the server rather than about the directive (permissions,
-- out of disk or memory, deadlock, shutdown, ...) are not caught: they
-- fail the INSERT so that nothing is lost silently.
CREATE OR REPLACE FUNCTION insert_directive(
    event_id BIGINT,
    directive JSONB,
    endpoint ip_endpoint
) RETURNS VOID
AS $$
DECLARE
    required CONSTANT TEXT[] := ARRAY['medium', 'recipient_address',
                                      'template_name', 'notification_format',
                                      'event_data_format'];
    field TEXT;
    jtype TEXT;
    complete BOOLEAN := TRUE;
    raw_interval JSONB;
    seconds NUMERIC;
    v_interval INTERVAL;
    raw_aggregate JSONB;
    v_aggregate TEXT[][];
    v_state TEXT;
    v_message TEXT;
BEGIN
    BEGIN
        IF directive IS NULL OR pg_catalog.jsonb_typeof(directive) <> 'object'
        THEN
            RAISE EXCEPTION 'the directive is a JSON %, not an object',
                  coalesce(pg_catalog.jsonb_typeof(directive), 'NULL')
                  USING ERRCODE = 'invalid_parameter_value';
        END IF;

        FOREACH field IN ARRAY required LOOP
            jtype := pg_catalog.jsonb_typeof(directive -> field);
            IF jtype IS NULL OR jtype = 'null' THEN
                complete := FALSE;
            ELSIF jtype <> 'string' THEN
                RAISE EXCEPTION '% is a JSON %, not a string', field, jtype
                      USING ERRCODE = 'invalid_parameter_value';
            ELSIF pg_catalog.char_length(directive ->> field) > 100 THEN
                RAISE EXCEPTION '% is % characters long, at most 100 fit',
                      field, pg_catalog.char_length(directive ->> field)
                      USING ERRCODE = 'string_data_right_truncation';
            END IF;
        END LOOP;

        -- Seconds; absent or null means 0.  IntelMQ may write a float, so
        -- 86400.0 and "86400.0" are accepted, 86400.5 is not.
        raw_interval := directive -> 'notification_interval';
        jtype := coalesce(pg_catalog.jsonb_typeof(raw_interval), 'null');
        IF jtype = 'null' THEN
            seconds := 0;
        ELSIF jtype IN ('number', 'string') THEN
            seconds := (directive ->> 'notification_interval')::NUMERIC;
        ELSE
            RAISE EXCEPTION 'notification_interval is a JSON %, not a number',
                  jtype USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- (Compared as text: numeric has no Infinity before PostgreSQL 14.)
        IF seconds::TEXT IN ('NaN', 'Infinity', '-Infinity')
           OR seconds <> pg_catalog.trunc(seconds) THEN
            RAISE EXCEPTION 'notification_interval % is not a whole number of seconds',
                  raw_interval USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_interval := seconds::BIGINT * INTERVAL '1 second';

        raw_aggregate := directive -> 'aggregate_identifier';
        jtype := coalesce(pg_catalog.jsonb_typeof(raw_aggregate), 'null');
        IF jtype = 'null' THEN
            v_aggregate := '{}'::TEXT[][];
        ELSIF jtype = 'object' THEN
            v_aggregate := json_object_as_text_array(raw_aggregate);
        ELSE
            RAISE EXCEPTION 'aggregate_identifier is a JSON %, not an object',
                  jtype USING ERRCODE = 'invalid_parameter_value';
        END IF;

        IF NOT complete OR v_interval = INTERVAL '-1 second' THEN
            RETURN;
        END IF;

        INSERT INTO directives (events_id,
                                medium,
                                recipient_address,
                                template_name,
                                notification_format,
                                event_data_format,
                                aggregate_identifier,
                                notification_interval,
                                endpoint)
        VALUES (insert_directive.event_id,
                directive ->> 'medium',
                directive ->> 'recipient_address',
                directive ->> 'template_name',
                directive ->> 'notification_format',
                directive ->> 'event_data_format',
                v_aggregate,
                v_interval,
                insert_directive.endpoint);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE,
                                v_message = MESSAGE_TEXT;
        -- 08 connection, 25 transaction state, 40 rollback (deadlock,
        -- serialization), 42 permissions/undefined objects, 53 resources,
        -- 55 object state (locks), 57 operator intervention, 58 system,
        -- F0 configuration, XX internal: not the directive's fault.
        IF pg_catalog.left(v_state, 2) IN ('08', '25', '40', '42', '53',
                                           '55', '57', '58', 'F0', 'XX')
        THEN
            RAISE;
        END IF;
        RAISE WARNING 'mailgen: event %: directive skipped: % (SQLSTATE %); directive: %',
              insert_directive.event_id, v_message, v_state,
              CASE WHEN pg_catalog.length(directive::TEXT) > 300
                   THEN pg_catalog.left(directive::TEXT, 300) || '...'
                   ELSE directive::TEXT END;
    END;
END
$$ LANGUAGE plpgsql VOLATILE;


-- Store the directives of extra -> 'certbund' -> 'source_directives'.
CREATE OR REPLACE FUNCTION directives_from_extra(
    event_id BIGINT,
    extra JSONB
) RETURNS VOID
AS $$
DECLARE
    list JSONB := extra -> 'certbund' -> 'source_directives';
    jtype TEXT := coalesce(pg_catalog.jsonb_typeof(list), 'null');
    item JSONB;
BEGIN
    IF jtype = 'null' THEN
        RETURN;
    END IF;
    IF jtype <> 'array' THEN
        RAISE WARNING 'mailgen: event %: no directives stored: certbund.source_directives is a JSON %, not an array',
              directives_from_extra.event_id, jtype;
        RETURN;
    END IF;
    FOR item IN SELECT e.value
                  FROM pg_catalog.jsonb_array_elements(list)
                       WITH ORDINALITY AS e(value, n)
                 ORDER BY e.n
    LOOP
        PERFORM insert_directive(directives_from_extra.event_id, item,
                                 'source');
    END LOOP;
END
$$ LANGUAGE plpgsql VOLATILE;


-- Trigger function.  SECURITY DEFINER: members of eventdb_insert may insert
-- events, the function (owned by eventdb_owner) writes the directives.
-- "extra" is json in some IntelMQ versions and jsonb in others; the cast
-- handles both (and a json value jsonb cannot hold only costs the
-- directives, not the event).
CREATE OR REPLACE FUNCTION events_insert_directives_for_row()
RETURNS TRIGGER
AS $$
DECLARE
    extra JSONB;
BEGIN
    BEGIN
        extra := NEW.extra::JSONB;
    EXCEPTION WHEN data_exception THEN
        RAISE WARNING 'mailgen: event %: no directives stored: extra is not valid jsonb: %',
              NEW.id, SQLERRM;
        RETURN NULL;
    END;
    PERFORM directives_from_extra(NEW.id, extra);
    RETURN NULL;
END
$$ LANGUAGE plpgsql VOLATILE SECURITY DEFINER;

-- Objects the SECURITY DEFINER function uses resolve in this schema only;
-- pg_temp last so that nobody can shadow them with temporary tables.
DO $path$
BEGIN
    EXECUTE pg_catalog.format(
        'ALTER FUNCTION events_insert_directives_for_row() '
        'SET search_path = pg_catalog, %I, pg_temp',
        pg_catalog.current_schema());
END
$path$;

ALTER FUNCTION json_object_as_text_array(JSONB) OWNER TO eventdb_owner;
ALTER FUNCTION insert_directive(BIGINT, JSONB, ip_endpoint) OWNER TO eventdb_owner;
ALTER FUNCTION directives_from_extra(BIGINT, JSONB) OWNER TO eventdb_owner;
ALTER FUNCTION events_insert_directives_for_row() OWNER TO eventdb_owner;

GRANT EXECUTE ON FUNCTION events_insert_directives_for_row()
   TO eventdb_insert;

DROP TRIGGER IF EXISTS events_insert_directive_trigger ON events;
CREATE TRIGGER events_insert_directive_trigger
    AFTER INSERT ON events
    FOR EACH ROW
    EXECUTE PROCEDURE events_insert_directives_for_row();

-- mailgen-c: wake mailgend when directives arrive.  Once per INSERT
-- statement (not per row), with an empty payload; PostgreSQL merges
-- identical notifications of one transaction and delivers them at commit.
-- The channel is 'mailgen' unless the database (or role) sets
--   ALTER DATABASE "intelmq-events" SET mailgen.notify_channel = 'other';
-- which must then match daemon.notify_channel.  A failure here (a full
-- notification queue, say) is only a WARNING: it never fails IntelMQ's
-- INSERT; mailgend's safety rescan finds the directives anyway.
CREATE OR REPLACE FUNCTION directives_notify_mailgen()
RETURNS TRIGGER
AS $$
BEGIN
    BEGIN
        PERFORM pg_notify(coalesce(nullif(current_setting('mailgen.notify_channel', true), ''),
                                   'mailgen'), '');
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'mailgen: notifying mailgend failed: % (SQLSTATE %)', SQLERRM, SQLSTATE;
    END;
    RETURN NULL;
END
$$ LANGUAGE plpgsql VOLATILE;

ALTER FUNCTION directives_notify_mailgen() OWNER TO eventdb_owner;

DROP TRIGGER IF EXISTS directives_notify_mailgen_trigger ON directives;
CREATE TRIGGER directives_notify_mailgen_trigger
AFTER INSERT ON directives
FOR EACH STATEMENT
EXECUTE PROCEDURE directives_notify_mailgen();



-- ------------------------------------------------------- mailgen-c tables
-- Tables of our own (DESIGN.md: new tables, never new columns on the
-- original's).  They are only written by mailgen-c; see docs/database.md.

-- Mails built and signed but not yet recorded in "sent".  A row is written
-- before the mail is handed to the SMTP server and deleted in the statement
-- that records it, so after a crash (or a temporary failure) the group is
-- sent again with the very same bytes: same ticket number, Message-Id and
-- signature.  The keys are the group's; directive_ids those the mail covers.
CREATE TABLE IF NOT EXISTS mailgen_outbox (
    intelmq_ticket VARCHAR(18) PRIMARY KEY,
    message_id TEXT NOT NULL,
    recipient_address TEXT NOT NULL,
    template_name TEXT NOT NULL,
    notification_format TEXT NOT NULL,
    event_data_format TEXT NOT NULL,
    aggregate_identifier TEXT[][],
    directive_ids BIGINT[] NOT NULL,
    envelope_from TEXT NOT NULL,
    envelope_to TEXT[] NOT NULL,
    message TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    attempts INTEGER NOT NULL DEFAULT 0
);
-- Copies a format rule asks for with the other placement of the CSV: the
-- same mail (ticket, To) built for the other placement, sent first to
-- these envelope recipients (docs/format-rules.md "Copies").
ALTER TABLE mailgen_outbox ADD COLUMN IF NOT EXISTS copy_message TEXT;
ALTER TABLE mailgen_outbox ADD COLUMN IF NOT EXISTS copy_envelope_to TEXT[];
ALTER TABLE mailgen_outbox OWNER TO eventdb_owner;
CREATE INDEX IF NOT EXISTS mailgen_outbox_group_idx
    ON mailgen_outbox (recipient_address, template_name, notification_format,
                       event_data_format);
GRANT SELECT, INSERT, UPDATE, DELETE ON mailgen_outbox TO eventdb_send_notifications;

-- Groups that failed: 'deferred' (a temporary failure; retried from
-- retry_at on, with a growing delay) or 'failed' (a permanent failure; not
-- retried until an operator says so with "mailgenctl retry").  One row per
-- group key; new directives of a failed group wait with it.
CREATE TABLE IF NOT EXISTS mailgen_failed_groups (
    id BIGSERIAL PRIMARY KEY,
    recipient_address TEXT NOT NULL,
    template_name TEXT NOT NULL,
    notification_format TEXT NOT NULL,
    event_data_format TEXT NOT NULL,
    aggregate_identifier TEXT[][],
    state VARCHAR(10) NOT NULL CHECK (state IN ('deferred', 'failed')),
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    first_failed_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_failed_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    retry_at TIMESTAMP WITH TIME ZONE,
    directive_ids BIGINT[] NOT NULL
);
ALTER TABLE mailgen_failed_groups OWNER TO eventdb_owner;
CREATE UNIQUE INDEX IF NOT EXISTS mailgen_failed_groups_key_idx
    ON mailgen_failed_groups (recipient_address, template_name, notification_format,
                              event_data_format, coalesce(aggregate_identifier, '{}'));
GRANT SELECT, INSERT, UPDATE, DELETE ON mailgen_failed_groups
   TO eventdb_send_notifications;
GRANT USAGE ON mailgen_failed_groups_id_seq TO eventdb_send_notifications;

-- Directives an operator gave up on ("mailgenctl drop"): never mailed.
-- directives.sent_id stays NULL (no mail was sent); tools that count
-- pending directives should leave these out.
CREATE TABLE IF NOT EXISTS mailgen_dropped_directives (
    directive_id BIGINT PRIMARY KEY REFERENCES directives(id) ON DELETE CASCADE,
    dropped_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    reason TEXT NOT NULL
);
ALTER TABLE mailgen_dropped_directives OWNER TO eventdb_owner;
GRANT SELECT, INSERT, DELETE ON mailgen_dropped_directives TO eventdb_send_notifications;

COMMIT;
