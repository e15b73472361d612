-- tests/data/sql/events.sql -- an IntelMQ-shaped "events" table for the
-- integration tests and the demo.
--
-- IntelMQ's PostgreSQL output bot writes one row per event, one column per
-- harmonization field (named like the field, so the names must be quoted)
-- and everything that has no column of its own in "extra".  This is a
-- subset of the table intelmq_psql_initdb generates, with the same column
-- names and types.  sql/notifications.sql is loaded on top of it.
--
-- Not for production: there the table comes from IntelMQ itself.

CREATE TABLE IF NOT EXISTS events (
    "id" BIGSERIAL PRIMARY KEY,

    "classification.identifier" text,
    "classification.taxonomy" text,
    "classification.type" text,

    "destination.asn" integer,
    "destination.fqdn" text,
    "destination.geolocation.cc" text,
    "destination.ip" inet,
    "destination.port" integer,
    "destination.url" text,

    "event_description.text" text,

    "feed.accuracy" real,
    "feed.code" text,
    "feed.name" text,
    "feed.provider" text,
    "feed.url" text,

    "malware.name" text,
    "malware.version" text,

    "protocol.application" text,
    "protocol.transport" text,

    "source.abuse_contact" text,
    "source.asn" integer,
    "source.as_name" text,
    "source.fqdn" text,
    "source.geolocation.cc" text,
    "source.geolocation.city" text,
    "source.ip" inet,
    "source.network" cidr,
    "source.port" integer,
    "source.reverse_dns" text,
    "source.url" text,

    "status" text,

    "time.observation" timestamp with time zone,
    "time.source" timestamp with time zone,

    "raw" text,
    "extra" jsonb
);
