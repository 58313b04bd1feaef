-- 0005: incidents, as SQLite's 0012 (relay/sql/schema.sql says what each column holds).

CREATE TABLE incidents (
    id             BIGSERIAL PRIMARY KEY,
    subject        TEXT NOT NULL,
    kind           TEXT NOT NULL,
    status         TEXT NOT NULL,
    since          DOUBLE PRECISION NOT NULL,
    last_failure   DOUBLE PRECISION NOT NULL,
    resolved_at    DOUBLE PRECISION,
    failures       INTEGER NOT NULL,
    dominant       TEXT NOT NULL,
    counts         TEXT NOT NULL,
    samples        TEXT NOT NULL,
    left_to_replay INTEGER
);
CREATE INDEX incidents_status ON incidents (status, since);
