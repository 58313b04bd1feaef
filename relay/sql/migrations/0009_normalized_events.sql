-- 0009: normalized events (docs/events.md). An item split from a batch is an event of its
-- own that points at the request it came from (parent_id); a normalized event carries the
-- canonical fields as columns; statuses keeps each message's current status.

ALTER TABLE events ADD COLUMN parent_id TEXT;
ALTER TABLE events ADD COLUMN provider TEXT;
ALTER TABLE events ADD COLUMN channel TEXT;
ALTER TABLE events ADD COLUMN provider_type TEXT;
ALTER TABLE events ADD COLUMN subject TEXT;
ALTER TABLE events ADD COLUMN contact TEXT;
ALTER TABLE events ADD COLUMN conversation TEXT;
ALTER TABLE events ADD COLUMN stale INTEGER;
CREATE INDEX events_subject ON events (subject, occurred_at) WHERE subject IS NOT NULL;
CREATE INDEX events_contact ON events (contact, received_at) WHERE contact IS NOT NULL;
CREATE INDEX events_parent ON events (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE statuses (
    provider    TEXT NOT NULL,
    subject     TEXT NOT NULL,
    status      TEXT NOT NULL,
    rank        INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    occurred_at REAL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (provider, subject)
);
