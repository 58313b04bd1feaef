-- 0004: replay history, body redaction, and the stable views for operators.

ALTER TABLE deliveries ADD COLUMN replay_of INTEGER REFERENCES deliveries (id) ON DELETE SET NULL;
CREATE INDEX deliveries_replay ON deliveries (replay_of) WHERE replay_of IS NOT NULL;
ALTER TABLE events ADD COLUMN redacted_at REAL;
CREATE INDEX attempts_started ON attempts (started_at);
CREATE INDEX rejections_at ON rejections (at);

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

CREATE VIEW v_destination_health AS
SELECT d.destination                                AS destination,
       SUM(d.state = 'pending')                     AS pending,
       SUM(d.state = 'dead')                        AS dead,
       SUM(d.state = 'delivered' AND d.delivered_at > strftime('%s', 'now') - 3600)
                                                    AS delivered_last_hour,
       CAST(strftime('%s', 'now') - MIN(CASE WHEN d.state = 'pending' THEN d.created_at END)
            AS INTEGER)                             AS oldest_pending_seconds,
       COALESCE(s.paused, 0)                        AS paused
  FROM deliveries d LEFT JOIN destination_state s ON s.destination = d.destination
 GROUP BY d.destination;
