-- 0012: incidents (relay/incidents.py): what went wrong with a destination or a source,
-- since when, why, and when it ended.

CREATE TABLE incidents (
    id             INTEGER PRIMARY KEY,
    subject        TEXT NOT NULL,
    kind           TEXT NOT NULL,
    status         TEXT NOT NULL,
    since          REAL NOT NULL,
    last_failure   REAL NOT NULL,
    resolved_at    REAL,
    failures       INTEGER NOT NULL,
    dominant       TEXT NOT NULL,
    counts         TEXT NOT NULL,
    samples        TEXT NOT NULL,
    left_to_replay INTEGER
);
CREATE INDEX incidents_status ON incidents (status, since);
