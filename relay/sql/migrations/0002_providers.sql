-- 0002: the provider's own event time, and a bounded record of rejected requests.

ALTER TABLE events ADD COLUMN occurred_at REAL;

CREATE TABLE rejections (
    id          INTEGER PRIMARY KEY,
    at          REAL NOT NULL,
    source      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    remote_addr TEXT,
    method      TEXT NOT NULL,
    headers     TEXT NOT NULL
);
CREATE INDEX rejections_source ON rejections (source, at);
