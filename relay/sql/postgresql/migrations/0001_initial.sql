-- relay on PostgreSQL: the same tables and views as on SQLite (relay/sql/schema.sql says
-- what every column means), in PostgreSQL's types. Times are Unix seconds (double
-- precision), as on SQLite, so the documented queries work with to_timestamp() in place
-- of datetime(…, 'unixepoch').

CREATE TABLE events (
    id              TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    received_at     DOUBLE PRECISION NOT NULL,
    idempotency_key TEXT,
    event_type      TEXT,
    content_type    TEXT,
    remote_addr     TEXT,
    headers         TEXT NOT NULL,
    body            BYTEA NOT NULL,
    occurred_at     DOUBLE PRECISION,
    redacted_at     DOUBLE PRECISION,
    seq             BIGSERIAL NOT NULL            -- insert order, for relay tail
);
CREATE UNIQUE INDEX events_idempotency ON events (source, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_received ON events (received_at);
CREATE INDEX events_type ON events (event_type, received_at) WHERE event_type IS NOT NULL;
CREATE INDEX events_seq ON events (seq);

CREATE TABLE deliveries (
    id              BIGSERIAL PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    destination     TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    lease_until     DOUBLE PRECISION,
    created_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL,
    delivered_at    DOUBLE PRECISION,
    last_status     INTEGER,
    last_error      TEXT,
    ordering_key    TEXT,
    replay_of       BIGINT REFERENCES deliveries (id) ON DELETE SET NULL,
    lease_seq       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX deliveries_due ON deliveries (destination, next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_state ON deliveries (state, destination, updated_at);
CREATE INDEX deliveries_order ON deliveries (destination, ordering_key, id)
    WHERE state = 'pending' AND ordering_key IS NOT NULL;
CREATE INDEX deliveries_replay ON deliveries (replay_of) WHERE replay_of IS NOT NULL;
CREATE INDEX deliveries_leased ON deliveries (destination) WHERE lease_until IS NOT NULL;

CREATE TABLE attempts (
    id               BIGSERIAL PRIMARY KEY,
    delivery_id      BIGINT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number           INTEGER NOT NULL,
    started_at       DOUBLE PRECISION NOT NULL,
    duration_ms      DOUBLE PRECISION NOT NULL,
    status           INTEGER,
    error            TEXT,
    response_excerpt TEXT,
    outcome          TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead'))
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);

CREATE TABLE rejections (
    id          BIGSERIAL PRIMARY KEY,
    at          DOUBLE PRECISION NOT NULL,
    source      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    remote_addr TEXT,
    method      TEXT NOT NULL,
    headers     TEXT NOT NULL
);
CREATE INDEX rejections_source ON rejections (source, at);
CREATE INDEX rejections_at ON rejections (at);

CREATE TABLE destination_state (
    destination TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    paused_at   DOUBLE PRECISION,
    reason      TEXT,
    updated_at  DOUBLE PRECISION NOT NULL,
    -- Shared by every relay of the cluster: a destination's token bucket (rate_limit)
    -- and its circuit breaker.
    tokens      DOUBLE PRECISION,
    tokens_at   DOUBLE PRECISION,
    circuit     TEXT NOT NULL DEFAULT 'closed',
    streak      INTEGER NOT NULL DEFAULT 0,
    opened_at   DOUBLE PRECISION,
    failing_since DOUBLE PRECISION
);

CREATE TABLE audit (
    id          BIGSERIAL PRIMARY KEY,
    at          DOUBLE PRECISION NOT NULL,
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

CREATE VIEW v_events AS
SELECT e.id                                        AS id,
       e.source                                    AS source,
       to_char(to_timestamp(e.received_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                                                   AS received,
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
       to_char(to_timestamp(d.updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                                                   AS died,
       EXISTS (SELECT 1 FROM deliveries r WHERE r.replay_of = d.id) AS replayed,
       d.updated_at                                AS died_at
  FROM deliveries d JOIN events e ON e.id = d.event_id
 WHERE d.state = 'dead';

CREATE VIEW dead_unreplayed AS
SELECT d.* FROM deliveries d
 WHERE d.state = 'dead' AND NOT EXISTS (SELECT 1 FROM deliveries r WHERE r.replay_of = d.id);

CREATE VIEW v_destination_health AS
SELECT d.destination                                AS destination,
       COUNT(*) FILTER (WHERE d.state = 'pending')  AS pending,
       (SELECT COUNT(*) FROM dead_unreplayed u WHERE u.destination = d.destination)
                                                    AS dead,
       COUNT(*) FILTER (WHERE d.state = 'delivered'
                          AND d.delivered_at > extract(epoch FROM now()) - 3600)
                                                    AS delivered_last_hour,
       CAST(extract(epoch FROM now()) - MIN(CASE WHEN d.state = 'pending' THEN d.created_at END)
            AS INTEGER)                             AS oldest_pending_seconds,
       COALESCE(MAX(s.paused), 0)                   AS paused
  FROM deliveries d LEFT JOIN destination_state s ON s.destination = d.destination
 GROUP BY d.destination;

CREATE TABLE relay_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
