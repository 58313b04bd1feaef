-- relay's database, as it stands after every migration. Read this file to know the tables;
-- the migrations in migrations/ build exactly this (a test compares them).
--
-- Times are Unix seconds (REAL). In sqlite3: datetime(received_at, 'unixepoch').

-- One received request, stored before the sender got its 2xx.
CREATE TABLE events (
    id              TEXT PRIMARY KEY,        -- 'evt_' + 26-char ULID: sortable, stable, sent downstream
    source          TEXT NOT NULL,           -- [[sources]] name: the request came to /in/<source>
    received_at     REAL NOT NULL,
    idempotency_key TEXT,                    -- NULL: this event is never treated as a duplicate
    event_type      TEXT,                    -- e.g. 'invoice.paid', when the source's rule finds one
    content_type    TEXT,
    remote_addr     TEXT,
    headers         TEXT NOT NULL,           -- JSON array of [name, value] pairs, as received
                                             -- (a header carrying the source's secret: "[redacted]")
    body            BLOB NOT NULL,           -- the raw bytes, exactly as received
    occurred_at     REAL,                    -- the provider's own time of the event, if it gives one
    redacted_at     REAL,                    -- set when retention emptied the body (metadata kept)
    -- Normalized events (docs/events.md); NULL for a source without split or normalize.
    parent_id       TEXT,                    -- an item split from a batch: the request's event
    provider        TEXT,                    -- the mapping's provider, e.g. 'sendgrid'
    channel         TEXT,                    -- sms, whatsapp, email, chat, …
    provider_type   TEXT,                    -- the provider's own type, e.g. 'bounce:blocked'
                                             -- (event_type holds the shared one, 'message.bounced')
    subject         TEXT,                    -- what a status is about: the message id
                                             -- (email: 'message-id:recipient')
    contact         TEXT,                    -- the phone number or address
    conversation    TEXT,                    -- the provider's conversation id, where it has one
    stale           INTEGER,                 -- 1: it would have moved its subject's status back
    origin          TEXT                     -- NULL: a request to /in/<source>; 'catch-up':
                                             -- fetched from the provider's API (no signature)
);
-- The duplicate check: one event per (source, key). Decided by SQLite, never by memory.
CREATE UNIQUE INDEX events_idempotency ON events (source, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_received ON events (received_at);
CREATE INDEX events_type ON events (event_type, received_at) WHERE event_type IS NOT NULL;
-- "What happened to this message": WHERE subject = ? ORDER BY occurred_at.
CREATE INDEX events_subject ON events (subject, occurred_at) WHERE subject IS NOT NULL;
CREATE INDEX events_contact ON events (contact, received_at) WHERE contact IS NOT NULL;
CREATE INDEX events_parent ON events (parent_id) WHERE parent_id IS NOT NULL;

-- Each message's current status (normalized events with a subject and a ranked type):
-- it only moves forward (relay/normalize/taxonomy.py), decided in the ingest transaction.
CREATE TABLE statuses (
    provider    TEXT NOT NULL,
    subject     TEXT NOT NULL,
    status      TEXT NOT NULL,               -- the shared type, e.g. 'message.read'
    rank        INTEGER NOT NULL,            -- queued 10 < deferred 15 < sent 20 < delivered 30
                                             -- < read 40; failed and bounced 50 (the end)
    event_id    TEXT NOT NULL,               -- the event that set it
    occurred_at REAL,                        -- that event's provider time
    updated_at  REAL NOT NULL,
    PRIMARY KEY (provider, subject)
);

-- One event on its way to one destination.
--   pending   waiting for its next attempt (next_attempt_at), or in flight (lease_until set)
--   delivered a receiver answered 2xx
--   dead      retries exhausted, too old, or a permanent 4xx; waits for replay
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    destination     TEXT NOT NULL,           -- [[destinations]] name
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,  -- attempts started, including one in flight
    next_attempt_at REAL NOT NULL,
    lease_until     REAL,                    -- set while an attempt is in flight; expires after a crash
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    delivered_at    REAL,
    last_status     INTEGER,                 -- HTTP status of the latest attempt, NULL if none
    last_error      TEXT,                    -- why the latest attempt failed
    ordering_key    TEXT,                    -- ordered destinations: waits for earlier ones of its key
    replay_of       INTEGER REFERENCES deliveries (id) ON DELETE SET NULL,
                                             -- a replay: the dead delivery it repeats (kept as history)
    lease_seq       INTEGER NOT NULL DEFAULT 0
                                             -- the lease's fencing id: grows with every claim; an
                                             -- outcome is written only under the lease it came from
);
-- What the scheduler asks: the next due pending deliveries of one destination.
CREATE INDEX deliveries_due ON deliveries (destination, next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_state ON deliveries (state, destination, updated_at);
-- Ordered delivery: is an earlier delivery of the same key still pending?
CREATE INDEX deliveries_order ON deliveries (destination, ordering_key, id)
    WHERE state = 'pending' AND ordering_key IS NOT NULL;
CREATE INDEX deliveries_replay ON deliveries (replay_of) WHERE replay_of IS NOT NULL;

-- One HTTP try of a delivery.
CREATE TABLE attempts (
    id               INTEGER PRIMARY KEY,
    delivery_id      INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number           INTEGER NOT NULL,       -- 1 for the first attempt of the delivery
    started_at       REAL NOT NULL,
    duration_ms      REAL NOT NULL,
    status           INTEGER,                -- HTTP status, NULL when no response came
    error            TEXT,                   -- connection error, timeout, or why it failed
    response_excerpt TEXT,                   -- the first bytes of the response body
    outcome          TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead')),
    response_headers TEXT                    -- JSON [[name, value], …], secrets redacted
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);

-- Requests refused by a source's verifier (401) or IP allowlist (403), newest kept: the
-- answer to "why did the provider's webhook fail?". Bounded by storage.keep_rejections;
-- headers are stored with signatures, tokens and credentials replaced by "[redacted]",
-- and bodies are never stored.
CREATE TABLE rejections (
    id          INTEGER PRIMARY KEY,
    at          REAL NOT NULL,
    source      TEXT NOT NULL,
    status      INTEGER NOT NULL,            -- 401 (not authentic) or 403 (address not allowed)
    reason      TEXT NOT NULL,               -- what the sender was told, e.g. 'signature does not match'
    remote_addr TEXT,                        -- the client (after trusted_proxies), not the proxy
    method      TEXT NOT NULL,
    headers     TEXT NOT NULL                -- JSON array of [name, value], secrets redacted
);
CREATE INDEX rejections_source ON rejections (source, at);
CREATE INDEX rejections_at ON rejections (at);

-- A destination relay paused after a long outage (circuit.pause_after), or an operator
-- paused. Its deliveries keep queueing; nothing is sent until it is resumed.
CREATE TABLE destination_state (
    destination TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    paused_at   REAL,
    reason      TEXT,                        -- e.g. 'failing since 2026-11-23T03:12:09Z'
    updated_at  REAL NOT NULL
);

-- Every operator action: replay (with its count), pause, resume, config reload (with a
-- digest of the file), prune, backup, console sign-in and failed sign-in. Only ever
-- inserted; retention.audit_after prunes it like the rest. request_id is the
-- Idempotency-Key of the request: a replay asked for twice with the same key answers with
-- the first one's result instead of replaying again.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    at          REAL NOT NULL,
    actor       TEXT NOT NULL,               -- 'console', 'cli:alice@host', 'api', or 'relay' itself
    origin      TEXT,                        -- the client's address, 'unix' for the socket
    action      TEXT NOT NULL,               -- replay, pause, resume, reload, prune, backup, sign-in, …
    target      TEXT,                        -- what it acted on: a destination, an event, a path
    params      TEXT NOT NULL DEFAULT '{}',  -- JSON: what was asked
    result      TEXT NOT NULL DEFAULT '{}',  -- JSON: what came of it (counts, error)
    request_id  TEXT
);
CREATE UNIQUE INDEX audit_request ON audit (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX audit_at ON audit (at);

-- Views for operators and their scripts. Their columns are stable across versions: new
-- columns may be added at the end, none is renamed or removed. docs/schema.md lists them.
CREATE VIEW v_events AS
SELECT e.id                                        AS id,
       e.source                                    AS source,
       datetime(e.received_at, 'unixepoch')        AS received,
       e.event_type                                AS event_type,
       e.idempotency_key                           AS idempotency_key,
       e.remote_addr                               AS remote_addr,
       length(e.body)                              AS body_bytes,
       (SELECT COUNT(*) FROM deliveries d WHERE d.event_id = e.id)                         AS deliveries,
       (SELECT COUNT(*) FROM deliveries d WHERE d.event_id = e.id AND d.state = 'pending')   AS pending,
       (SELECT COUNT(*) FROM deliveries d WHERE d.event_id = e.id AND d.state = 'delivered') AS delivered,
       (SELECT COUNT(*) FROM deliveries d WHERE d.event_id = e.id AND d.state = 'dead')      AS dead,
       e.received_at                               AS received_at
  FROM events e;

CREATE VIEW v_dead AS
SELECT d.id                                        AS delivery_id,
       d.event_id                                  AS event_id,
       e.source                                    AS source,
       e.event_type                                AS event_type,
       d.destination                               AS destination,
       d.attempts                                  AS attempts,
       d.last_status                               AS last_status,
       d.last_error                                AS last_error,
       datetime(d.updated_at, 'unixepoch')         AS died,
       EXISTS (SELECT 1 FROM deliveries r WHERE r.replay_of = d.id) AS replayed,
       d.updated_at                                AS died_at
  FROM deliveries d JOIN events e ON e.id = d.event_id
 WHERE d.state = 'dead';

-- Dead and not yet replayed: the one definition, used by relay's own queries too.
CREATE VIEW dead_unreplayed AS
SELECT d.* FROM deliveries d
 WHERE d.state = 'dead' AND NOT EXISTS (SELECT 1 FROM deliveries r WHERE r.replay_of = d.id);

CREATE VIEW v_destination_health AS
SELECT d.destination                                AS destination,
       SUM(d.state = 'pending')                     AS pending,
       (SELECT COUNT(*) FROM dead_unreplayed u WHERE u.destination = d.destination)
                                                    AS dead,
       SUM(d.state = 'delivered' AND d.delivered_at > strftime('%s', 'now') - 3600)
                                                    AS delivered_last_hour,
       CAST(strftime('%s', 'now') - MIN(CASE WHEN d.state = 'pending' THEN d.created_at END)
            AS INTEGER)                             AS oldest_pending_seconds,
       COALESCE(s.paused, 0)                        AS paused
  FROM deliveries d LEFT JOIN destination_state s ON s.destination = d.destination
 GROUP BY d.destination;

-- The overview's per-minute rollup (relay/store/rollup.py): counts added by each writer
-- transaction for what it commits, so health figures never scan the event tables.
-- metric: received, rejected (a source); queued, delivered, retried, dead, lat0… (a
-- destination; latN counts deliveries whose received → delivered time fell in bucket N).
CREATE TABLE minutes (
    minute  INTEGER NOT NULL,                -- unix time // 60
    kind    TEXT NOT NULL,                   -- 'source' or 'destination'
    name    TEXT NOT NULL,
    metric  TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (minute, kind, name, metric)
) WITHOUT ROWID;

-- Catch-up (relay/catchup/, docs/operations.md "After an outage"). Each running relay
-- writes its beat every 15 s; at start, the newest beat of any relay says since when
-- nobody received webhooks.
CREATE TABLE heartbeats (
    node     TEXT PRIMARY KEY,               -- one relay process (a random id per start)
    started  REAL NOT NULL,
    beat     REAL NOT NULL                   -- when it was last alive
);

-- One window of one source to fetch back from the provider's API: a downtime found at
-- start, the periodic re-check, or an operator's `relay catch-up`.
CREATE TABLE catch_ups (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    since       REAL NOT NULL,
    until       REAL NOT NULL,
    reason      TEXT NOT NULL,               -- 'downtime', 'interval' or 'manual'
    state       TEXT NOT NULL,               -- 'open' (to run, or running), 'done', 'failed'
    created_at  REAL NOT NULL,
    finished_at REAL,
    tries       INTEGER NOT NULL DEFAULT 0,
    fetched     INTEGER,                     -- objects the provider listed in the window
    new         INTEGER,                     -- events this run stored (Stripe: pulled)
    known       INTEGER,                     -- relay had them already
    requested   INTEGER,                     -- redeliveries asked of the provider
    error       TEXT                         -- the provider's answer, when it failed
);
-- Two relays starting after the same outage record its window once.
CREATE UNIQUE INDEX catch_ups_downtime ON catch_ups (source, since) WHERE reason = 'downtime';
CREATE INDEX catch_ups_open ON catch_ups (state) WHERE state <> 'done';

-- What went wrong with a destination (or a source), since when, why, and when it ended
-- (relay/incidents.py; docs/operations.md, "Incidents").
CREATE TABLE incidents (
    id             INTEGER PRIMARY KEY,
    subject        TEXT NOT NULL,               -- the destination's (or source's) name
    kind           TEXT NOT NULL,               -- 'failing' (its attempts fail), …
    status         TEXT NOT NULL,               -- 'open' or 'resolved'
    since          REAL NOT NULL,               -- its first failure
    last_failure   REAL NOT NULL,
    resolved_at    REAL,                        -- after a quiet period without failures
    failures       INTEGER NOT NULL,
    dominant       TEXT NOT NULL,               -- the class most failures were: 'HTTP 5xx', 'timeout' …
    counts         TEXT NOT NULL,               -- JSON: failures per class
    samples        TEXT NOT NULL,               -- JSON: the first failure of each class (status, error, body, event)
    left_to_replay INTEGER                      -- at resolution: its dead letters not replayed
);
CREATE INDEX incidents_status ON incidents (status, since);
