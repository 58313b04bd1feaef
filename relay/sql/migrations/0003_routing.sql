-- 0003: ordered delivery, and destinations paused by relay or by an operator.

ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
CREATE INDEX deliveries_order ON deliveries (destination, ordering_key, id)
    WHERE state = 'pending' AND ordering_key IS NOT NULL;

CREATE TABLE destination_state (
    destination TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    paused_at   REAL,
    reason      TEXT,
    updated_at  REAL NOT NULL
);
