-- 0011: catch-up (docs/operations.md, "After an outage"): where an event came from, when a
-- relay was last alive, and each catch-up run (relay/catchup/).

ALTER TABLE events ADD COLUMN origin TEXT;

CREATE TABLE heartbeats (
    node     TEXT PRIMARY KEY,
    started  REAL NOT NULL,
    beat     REAL NOT NULL
);

CREATE TABLE catch_ups (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    since       REAL NOT NULL,
    until       REAL NOT NULL,
    reason      TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  REAL NOT NULL,
    finished_at REAL,
    tries       INTEGER NOT NULL DEFAULT 0,
    fetched     INTEGER,
    new         INTEGER,
    known       INTEGER,
    requested   INTEGER,
    error       TEXT
);
CREATE UNIQUE INDEX catch_ups_downtime ON catch_ups (source, since) WHERE reason = 'downtime';
CREATE INDEX catch_ups_open ON catch_ups (state) WHERE state <> 'done';
