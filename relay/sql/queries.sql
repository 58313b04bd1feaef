-- Named queries, loaded by relay.sql.queries(). Parameters are :named.

-- name: insert_event
INSERT INTO events (id, source, received_at, idempotency_key, event_type, content_type,
                    remote_addr, headers, body, occurred_at, parent_id, provider, channel,
                    provider_type, subject, contact, conversation, stale, origin)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING;

-- name: statuses_of
-- The current status ranks of the messages a batch may move: :keys is a JSON array of
-- [provider, subject] pairs.
SELECT s.provider, s.subject, s.rank
  FROM json_each(:keys) AS k
  JOIN statuses AS s
    ON s.provider = json_extract(k.value, '$[0]') AND s.subject = json_extract(k.value, '$[1]');

-- name: set_status
INSERT INTO statuses (provider, subject, status, rank, event_id, occurred_at, updated_at)
VALUES (:provider, :subject, :status, :rank, :event_id, :occurred_at, :now)
ON CONFLICT (provider, subject) DO UPDATE
   SET status = excluded.status, rank = excluded.rank, event_id = excluded.event_id,
       occurred_at = excluded.occurred_at, updated_at = excluded.updated_at;

-- name: mark_stale
UPDATE events SET stale = 1 WHERE id = ?;

-- name: forget_request
-- A batch whose every item was a duplicate: its request is not kept either.
DELETE FROM events WHERE id = ?;

-- name: find_original
SELECT id FROM events WHERE source = ? AND idempotency_key = ?;

-- name: insert_delivery
INSERT INTO deliveries (event_id, destination, next_attempt_at, created_at, updated_at,
                        ordering_key)
VALUES (?, ?, ?, ?, ?, ?);

-- name: insert_delivery_leased
-- A delivery handed straight to its idle lane by the commit that stores its event: born
-- leased, as if claimed (see Writer in store.py).
INSERT INTO deliveries (event_id, destination, next_attempt_at, created_at, updated_at,
                        ordering_key, attempts, lease_until, lease_seq)
VALUES (?, ?, ?, ?, ?, ?, 1, ?, 1)
RETURNING id;

-- name: claim_due
-- Take up to :limit due deliveries of one destination and lease them. A lease that has
-- expired (its holder crashed or hung) is taken again: delivery is at least once.
-- An ordered delivery (ordering_key set) waits while an earlier one of its key is pending.
UPDATE deliveries
   SET lease_until = :lease_until, attempts = attempts + 1, updated_at = :now,
       lease_seq = lease_seq + 1
 WHERE id IN (SELECT d.id FROM deliveries d
               WHERE d.destination = :destination AND d.state = 'pending'
                 AND d.next_attempt_at <= :now
                 AND (d.lease_until IS NULL OR d.lease_until < :now)
                 AND (d.ordering_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM deliveries p
                         WHERE p.destination = d.destination AND p.state = 'pending'
                           AND p.ordering_key = d.ordering_key AND p.id < d.id))
               ORDER BY d.next_attempt_at, d.id
               LIMIT :limit)
RETURNING id, event_id, attempts, created_at, lease_seq;

-- name: next_due
-- When this destination next has work: a retry timer, or a lease that will expire.
-- Ordered deliveries behind an earlier one of their key are not due: that one's end wakes
-- the lane.
SELECT MIN(CASE WHEN d.lease_until IS NULL THEN d.next_attempt_at
                ELSE MAX(d.next_attempt_at, d.lease_until) END)
  FROM deliveries d
 WHERE d.destination = :destination AND d.state = 'pending'
   AND (d.ordering_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM deliveries p
           WHERE p.destination = d.destination AND p.state = 'pending'
             AND p.ordering_key = d.ordering_key AND p.id < d.id));

-- name: insert_attempt
-- An attempt's outcome, kept only if it came under the delivery's current lease (the
-- fencing id, lease_seq); with :strict (an agent's result), only if that lease has not run
-- out either. finish_attempt then applies it under the same condition.
INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status, error,
                      response_excerpt, outcome, response_headers)
SELECT :id, :number, :started_at, :duration_ms, :status, :error, :excerpt, :outcome, :headers
 WHERE EXISTS (SELECT 1 FROM deliveries d
                WHERE d.id = :id AND d.lease_seq = :lease AND d.state = 'pending'
                  AND d.lease_until IS NOT NULL AND (NOT :strict OR d.lease_until >= :now));

-- name: finish_attempt
-- Returns the delivery when the outcome applied (for the rollup); a stale one returns none.
UPDATE deliveries
   SET state = :state, next_attempt_at = :next_attempt_at, lease_until = NULL,
       updated_at = :now, last_status = :status, last_error = :error,
       delivered_at = CASE WHEN :state = 'delivered' THEN :now ELSE delivered_at END
 WHERE id = :id AND lease_seq = :lease AND state = 'pending'
   AND lease_until IS NOT NULL AND (NOT :strict OR lease_until >= :now)
RETURNING destination, state, created_at;

-- name: release_lease
-- An attempt that never reached the receiver's side (its agent went away with it): the
-- lease ends and the attempt is not counted; the delivery goes again.
UPDATE deliveries
   SET lease_until = NULL, attempts = MAX(0, attempts - 1), updated_at = :now
 WHERE id = :id AND lease_seq = :lease AND state = 'pending';

-- name: release_leases
-- At start: no attempt of an earlier process is still running, so every lease is stale.
UPDATE deliveries SET lease_until = NULL WHERE state = 'pending' AND lease_until IS NOT NULL;

-- name: insert_rejection
INSERT INTO rejections (at, source, status, reason, remote_addr, method, headers)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: trim_rejections
-- Keep the newest :keep rows; ids only grow, so this is a range delete on the primary key.
DELETE FROM rejections WHERE id <= (SELECT MAX(id) FROM rejections) - :keep;

-- name: pending_count
SELECT COUNT(*) FROM deliveries WHERE destination = ? AND state = 'pending';

-- name: destination_states
SELECT destination, paused, paused_at, reason FROM destination_state;

-- name: set_paused
INSERT INTO destination_state (destination, paused, paused_at, reason, updated_at)
VALUES (:destination, :paused, :paused_at, :reason, :now)
ON CONFLICT (destination) DO UPDATE
   SET paused = excluded.paused, paused_at = excluded.paused_at, reason = excluded.reason,
       updated_at = excluded.updated_at;

-- name: prune_delivered
-- Events older than :before with no delivery left to make (all delivered, or none routed).
DELETE FROM events WHERE id IN (
    SELECT e.id FROM events e
     WHERE e.received_at < :before
       AND NOT EXISTS (SELECT 1 FROM deliveries d
                        WHERE d.event_id = e.id AND d.state != 'delivered')
     LIMIT :batch);

-- name: prune_dead
-- Events older than :before that have a dead delivery and nothing pending.
DELETE FROM events WHERE id IN (
    SELECT e.id FROM events e
     WHERE e.received_at < :before
       AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = 'dead')
       AND NOT EXISTS (SELECT 1 FROM deliveries d
                        WHERE d.event_id = e.id AND d.state = 'pending')
     LIMIT :batch);

-- name: prune_rejections
DELETE FROM rejections WHERE id IN (
    SELECT id FROM rejections WHERE at < :before LIMIT :batch);

-- name: redact_delivered
-- Empty the body (and the contact) of events delivered everywhere; headers and metadata stay.
UPDATE events SET body = X'', contact = NULL, redacted_at = :now
 WHERE id IN (
    SELECT e.id FROM events e
     WHERE e.received_at < :before AND e.redacted_at IS NULL
       AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
       AND NOT EXISTS (SELECT 1 FROM deliveries d
                        WHERE d.event_id = e.id AND d.state != 'delivered')
     LIMIT :batch);

-- name: gauges_pending
SELECT destination, COUNT(*), MIN(created_at) FROM deliveries
 WHERE state = 'pending' GROUP BY destination;

-- name: gauges_dead
SELECT destination, COUNT(*) FROM dead_unreplayed GROUP BY destination;

-- name: payloads
-- The payloads of several events (a claim batch): :ids is a JSON array of event ids.
SELECT id, source, content_type, headers, body, received_at, event_type, occurred_at,
       parent_id, provider, channel, provider_type, subject, contact, conversation, stale,
       origin
  FROM events WHERE id IN (SELECT value FROM json_each(:ids));

-- name: event_by_id
SELECT id, source, received_at, occurred_at, event_type, idempotency_key, content_type,
       remote_addr, headers, body, redacted_at, parent_id, provider, channel, provider_type,
       subject, contact, conversation, stale, origin
  FROM events WHERE id = ?;

-- name: event_items
-- The items split from a request (docs/events.md), in the order they were stored.
SELECT id, event_type, idempotency_key FROM events WHERE parent_id = ? ORDER BY received_at, id;

-- name: event_deliveries
SELECT id, destination, state, attempts, next_attempt_at, created_at, delivered_at,
       last_status, last_error, replay_of
  FROM deliveries WHERE event_id = ? ORDER BY id;

-- name: delivery_attempts
SELECT number, started_at, duration_ms, status, error, response_excerpt, outcome,
       response_headers
  FROM attempts WHERE delivery_id = ? ORDER BY id;

-- name: events_after
-- relay tail: what was committed since the last event shown, in commit order. Ids are
-- made when a request arrives, so a slow request's id sorts before events committed ahead
-- of it; the rowid grows with each insert of the single writer, which is commit order.
SELECT rowid, id, received_at, source, event_type, idempotency_key FROM events
 WHERE rowid > :after AND (:source IS NULL OR source = :source)
 ORDER BY rowid LIMIT :limit;

-- name: latest_position
SELECT COALESCE(MAX(rowid), 0) FROM events;

-- name: dead_groups
SELECT destination, last_error, COUNT(*), MAX(updated_at) FROM dead_unreplayed
 GROUP BY destination, last_error ORDER BY COUNT(*) DESC LIMIT ?;

-- name: stats_sources
SELECT source, COUNT(*) FROM events WHERE received_at >= ? GROUP BY source;

-- name: stats_rejections
SELECT source, COUNT(*) FROM rejections WHERE at >= ? GROUP BY source;

-- name: delivered_destinations
-- Destinations with delivered rows, by a skip-scan of the (state, destination) index: one
-- index probe per destination instead of a pass over every delivery.
WITH RECURSIVE d(name) AS (
    SELECT MIN(destination) FROM deliveries WHERE state = 'delivered'
    UNION ALL
    SELECT (SELECT MIN(destination) FROM deliveries
             WHERE state = 'delivered' AND destination > d.name)
      FROM d WHERE d.name IS NOT NULL)
SELECT name FROM d WHERE name IS NOT NULL;

-- name: delivered_since
SELECT COUNT(*) FROM deliveries
 WHERE state = 'delivered' AND destination = ? AND updated_at >= ?;

-- name: rejections_latest
SELECT at, source, status, reason, remote_addr, method, headers, id FROM rejections
 WHERE (:source IS NULL OR source = :source)
   AND (:since IS NULL OR at >= :since) AND (:until IS NULL OR at < :until)
   AND (:before IS NULL OR id < :before)
 ORDER BY id DESC LIMIT :limit;

-- name: routing_inputs
SELECT id, event_type, headers, body FROM events
 WHERE id IN (SELECT value FROM json_each(:ids));

-- name: item_counts
-- How many items each of these requests was split into (events_parent).
SELECT parent_id, count(*) FROM events
 WHERE parent_id IN (SELECT value FROM json_each(:ids)) GROUP BY parent_id;

-- name: audit_latest
SELECT id, at, actor, origin, action, target, params, result FROM audit
 WHERE (:since IS NULL OR at >= :since) AND (:until IS NULL OR at < :until)
   AND (:before IS NULL OR id < :before) AND (:action IS NULL OR action = :action)
 ORDER BY id DESC LIMIT :limit;

-- name: events_by_prefix
-- Event ids that start with :prefix (ids are ASCII, so every one is below prefix || '~').
SELECT id FROM events WHERE id >= :prefix AND id < :prefix || '~' ORDER BY id LIMIT 2;

-- name: audit_insert
-- One operator action. A request_id already used (the same request again) inserts nothing.
INSERT INTO audit (at, actor, origin, action, target, params, result, request_id)
VALUES (:at, :actor, :origin, :action, :target, :params, :result, :request_id)
ON CONFLICT (request_id) WHERE request_id IS NOT NULL DO NOTHING;

-- name: audit_answered
SELECT result, params FROM audit WHERE request_id = ?;

-- name: replay_delivery
-- A replay: a new pending delivery. Unless :again, one that repeats a dead delivery is not
-- made when a replay of that delivery exists already (so two requests, two tabs or a
-- filter after a replay by hand never double it); delivered ones are sent as asked.
INSERT INTO deliveries (event_id, destination, next_attempt_at, created_at, updated_at,
                        ordering_key, replay_of)
SELECT :event_id, :destination, :now, :now, :now, :ordering_key, :replay_of
 WHERE :again OR :replay_of IS NULL
    OR NOT EXISTS (SELECT 1 FROM deliveries r WHERE r.replay_of = :replay_of)
    OR (SELECT o.state FROM deliveries o WHERE o.id = :replay_of) != 'dead'
RETURNING id;

-- name: prune_audit
DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < :before LIMIT :batch);

-- name: last_received
-- When a source last received an event: the time index, newest first, to the first match.
SELECT received_at FROM events WHERE source = ? ORDER BY received_at DESC LIMIT 1;

-- name: add_minutes
-- A transaction's tally (relay/store/rollup.py), added to the rollup.
INSERT INTO minutes (minute, kind, name, metric, n) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (minute, kind, name, metric) DO UPDATE SET n = n + excluded.n;

-- name: trim_minutes
DELETE FROM minutes WHERE minute < :before;

-- name: minutes_since
SELECT minute, kind, name, metric, n FROM minutes WHERE minute >= :since;

-- name: minutes_between
SELECT kind, name, metric, SUM(n) FROM minutes
 WHERE minute >= :first AND minute < :end GROUP BY kind, name, metric;

-- name: beat
-- This relay is alive (relay/catchup/: the newest beat says since when nobody listened).
INSERT INTO heartbeats (node, started, beat) VALUES (:node, :started, :now)
ON CONFLICT (node) DO UPDATE SET beat = excluded.beat;

-- name: forget_beats
DELETE FROM heartbeats WHERE beat < :before;

-- name: last_beat
SELECT MAX(beat) FROM heartbeats;

-- name: catch_up_open
-- A window to catch up; a downtime window two relays found after the same outage once.
INSERT INTO catch_ups (source, since, until, reason, state, created_at)
VALUES (:source, :since, :until, :reason, 'open', :now)
ON CONFLICT DO NOTHING;

-- name: catch_up_tried
UPDATE catch_ups SET tries = tries + 1 WHERE id = :id;

-- name: catch_up_close
UPDATE catch_ups
   SET state = :state, finished_at = :now, fetched = :fetched, new = :new, known = :known,
       requested = :requested, error = :error
 WHERE id = :id;

-- name: catch_ups_open
SELECT id, source, since, until, reason, tries, created_at, error
  FROM catch_ups WHERE state = 'open' ORDER BY id;

-- name: known_keys
-- Which of these idempotency keys (a JSON array) a source has an event for.
SELECT idempotency_key FROM events
 WHERE source = :source AND idempotency_key IN (SELECT value FROM json_each(:keys));

-- name: incident_insert
INSERT INTO incidents (subject, kind, status, since, last_failure, resolved_at, failures,
                       dominant, counts, samples, left_to_replay)
VALUES (:subject, :kind, :status, :since, :last_failure, :resolved_at, :failures, :dominant,
        :counts, :samples, :left_to_replay)
RETURNING id;

-- name: incident_update
UPDATE incidents
   SET status = :status, last_failure = :last_failure, resolved_at = :resolved_at,
       failures = :failures, dominant = :dominant, counts = :counts, samples = :samples,
       left_to_replay = :left_to_replay
 WHERE id = :id
RETURNING id;

-- name: incidents_of
-- An incident list, newest first: the open ones, or the resolved ones (:status), a page.
SELECT id, subject, kind, status, since, last_failure, resolved_at, failures, dominant,
       counts, samples, left_to_replay
  FROM incidents
 WHERE (:status IS NULL OR status = :status) AND (:before IS NULL OR id < :before)
 ORDER BY id DESC LIMIT :limit;

-- name: prune_incidents
DELETE FROM incidents WHERE id IN (
    SELECT id FROM incidents WHERE status = 'resolved' AND resolved_at < :before LIMIT :batch);
