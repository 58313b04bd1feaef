-- 0007: the audit trail: one row per operator action, only ever inserted (retention aside).
-- request_id is the Idempotency-Key of the request that did it: a replay asked for twice
-- with the same key finds the first row and answers with its result instead of replaying.

CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    at          REAL NOT NULL,
    actor       TEXT NOT NULL,
    origin      TEXT,
    action      TEXT NOT NULL,
    target      TEXT,
    params      TEXT NOT NULL DEFAULT '{}',
    result      TEXT NOT NULL DEFAULT '{}',
    request_id  TEXT
);
CREATE UNIQUE INDEX audit_request ON audit (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX audit_at ON audit (at);
