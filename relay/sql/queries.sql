-- Named queries, loaded by relay.sql.queries(). Parameters are :named.

-- name: insert_event
INSERT INTO events (id, source, received_at, idempotency_key, event_type, content_type,
                    remote_addr, headers, body, occurred_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING;

-- name: find_original
SELECT id FROM events WHERE source = ? AND idempotency_key = ?;

-- name: insert_delivery
INSERT INTO deliveries (event_id, destination, next_attempt_at, created_at, updated_at)
VALUES (?, ?, ?, ?, ?);

-- name: claim_due
-- Take up to :limit due deliveries of one destination and lease them. A lease that has
-- expired (its holder crashed or hung) is taken again: delivery is at least once.
UPDATE deliveries
   SET lease_until = :lease_until, attempts = attempts + 1, updated_at = :now
 WHERE id IN (SELECT id FROM deliveries
               WHERE destination = :destination AND state = 'pending'
                 AND next_attempt_at <= :now
                 AND (lease_until IS NULL OR lease_until < :now)
               ORDER BY next_attempt_at, id
               LIMIT :limit)
RETURNING id, event_id, attempts, created_at;

-- name: next_due
-- When this destination next has work: a retry timer, or a lease that will expire.
SELECT MIN(CASE WHEN lease_until IS NULL THEN next_attempt_at
                ELSE MAX(next_attempt_at, lease_until) END)
  FROM deliveries
 WHERE destination = ? AND state = 'pending';

-- name: insert_attempt
INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status, error,
                      response_excerpt, outcome)
VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- name: finish_attempt
UPDATE deliveries
   SET state = :state, next_attempt_at = :next_attempt_at, lease_until = NULL,
       updated_at = :now, last_status = :status, last_error = :error,
       delivered_at = CASE WHEN :state = 'delivered' THEN :now ELSE delivered_at END
 WHERE id = :id;

-- name: release_leases
-- At start: no attempt of an earlier process is still running, so every lease is stale.
UPDATE deliveries SET lease_until = NULL WHERE state = 'pending' AND lease_until IS NOT NULL;

-- name: events_for_delivery
SELECT id, source, content_type, headers, body FROM events WHERE id = ?;

-- name: insert_rejection
INSERT INTO rejections (at, source, status, reason, remote_addr, method, headers)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: trim_rejections
-- Keep the newest :keep rows; ids only grow, so this is a range delete on the primary key.
DELETE FROM rejections WHERE id <= (SELECT MAX(id) FROM rejections) - :keep;
