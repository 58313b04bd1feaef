-- 0004: catch-up, as SQLite's 0011 (relay/sql/schema.sql says what each column holds).

ALTER TABLE events ADD COLUMN origin TEXT;

CREATE TABLE heartbeats (
    node     TEXT PRIMARY KEY,
    started  DOUBLE PRECISION NOT NULL,
    beat     DOUBLE PRECISION NOT NULL
);

CREATE TABLE catch_ups (
    id          BIGSERIAL PRIMARY KEY,
    source      TEXT NOT NULL,
    since       DOUBLE PRECISION NOT NULL,
    until       DOUBLE PRECISION NOT NULL,
    reason      TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    tries       INTEGER NOT NULL DEFAULT 0,
    fetched     INTEGER,
    new         INTEGER,
    known       INTEGER,
    requested   INTEGER,
    error       TEXT
);
CREATE UNIQUE INDEX catch_ups_downtime ON catch_ups (source, since) WHERE reason = 'downtime';
CREATE INDEX catch_ups_open ON catch_ups (state) WHERE state <> 'done';
