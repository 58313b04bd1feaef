-- Named queries for PostgreSQL, loaded by relay.sql.queries("postgresql"): the same names
-- and meanings as relay/sql/queries.sql, in psycopg's marks (%s, %(name)s). A parameter
-- that may be NULL carries a cast, since the server must know its type.

-- name: insert_event
INSERT INTO events (id, source, received_at, idempotency_key, event_type, content_type,
                    remote_addr, headers, body, occurred_at, parent_id, provider, channel,
                    provider_type, subject, contact, conversation, stale, origin)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING;

-- name: lock_subjects
-- The messages whose status this batch may move, locked in one order (two relays' batches
-- never wait on each other in a circle), so each is decided by one relay at a time even
-- before it has a row in statuses. Keys: provider || ' ' || subject.
SELECT pg_advisory_xact_lock(hashtext('relay.status'), hashtext(k))
  FROM (SELECT k FROM unnest(%s::text[]) AS k ORDER BY k) AS keys;

-- name: statuses_of
-- The current status ranks of the messages a batch may move (locked by lock_subjects).
SELECT s.provider, s.subject, s.rank
  FROM unnest(%s::text[], %s::text[]) AS k (provider, subject)
  JOIN statuses AS s ON s.provider = k.provider AND s.subject = k.subject;

-- name: set_status
INSERT INTO statuses (provider, subject, status, rank, event_id, occurred_at, updated_at)
VALUES (%(provider)s, %(subject)s, %(status)s, %(rank)s, %(event_id)s, %(occurred_at)s, %(now)s)
ON CONFLICT (provider, subject) DO UPDATE
   SET status = excluded.status, rank = excluded.rank, event_id = excluded.event_id,
       occurred_at = excluded.occurred_at, updated_at = excluded.updated_at;

-- name: mark_stale
UPDATE events SET stale = 1 WHERE id = %s;

-- name: forget_request
-- A batch whose every item was a duplicate: its request is not kept either.
DELETE FROM events WHERE id = %s;

-- name: find_original
SELECT id FROM events WHERE source = %s AND idempotency_key = %s;

-- name: insert_delivery
INSERT INTO deliveries (event_id, destination, next_attempt_at, created_at, updated_at,
                        ordering_key)
VALUES (%s, %s, %s, %s, %s, %s);

-- name: wake_lanes
-- In the transaction that adds deliveries: every relay listening is told which
-- destinations have new work, when (and only if) it commits.
SELECT pg_notify('relay_work', %s);

-- name: lock_destination
-- Claims of one destination take turns across the cluster (until their transaction
-- ends), so that the count of leases below and the token bucket are exact.
SELECT pg_advisory_xact_lock(hashtext('relay.claim'), hashtext(%s));

-- name: bucket
SELECT tokens, tokens_at FROM destination_state WHERE destination = %s;

-- name: set_bucket
INSERT INTO destination_state (destination, updated_at, tokens, tokens_at)
VALUES (%(destination)s, %(now)s, %(tokens)s, %(now)s)
ON CONFLICT (destination) DO UPDATE
   SET tokens = excluded.tokens, tokens_at = excluded.tokens_at;

-- name: claim_due
-- Take up to :limit due deliveries of one destination and lease them; rows another relay
-- is claiming this instant are skipped, not waited for. A lease that has expired (its
-- holder crashed or hung) is taken again: delivery is at least once. An ordered delivery
-- waits while an earlier one of its key is pending (leased or not, on any relay).
WITH due AS (
    SELECT d.id FROM deliveries d
     WHERE d.destination = %(destination)s AND d.state = 'pending'
       AND d.next_attempt_at <= %(now)s
       AND (d.lease_until IS NULL OR d.lease_until < %(now)s)
       AND (d.ordering_key IS NULL OR NOT EXISTS (
              SELECT 1 FROM deliveries p
               WHERE p.destination = d.destination AND p.state = 'pending'
                 AND p.ordering_key = d.ordering_key AND p.id < d.id))
     ORDER BY d.next_attempt_at, d.id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE deliveries d
       SET lease_until = %(lease_until)s, attempts = d.attempts + 1, updated_at = %(now)s,
           lease_seq = d.lease_seq + 1
      FROM due WHERE d.id = due.id
    RETURNING d.id, d.event_id, d.attempts, d.created_at, d.lease_seq, d.next_attempt_at
)
SELECT id, event_id, attempts, created_at, lease_seq FROM claimed ORDER BY next_attempt_at, id;

-- name: claim_due_capped
-- claim_due within the destination's max_concurrency for the whole cluster: the leases
-- every relay holds are counted by this statement, which runs after lock_destination (so
-- its snapshot sees every claim committed before). One row always: the room there was,
-- then the claimed delivery (NULLs when none was).
WITH room AS (
    SELECT GREATEST(0, LEAST(%(limit)s::integer, %(max_concurrency)s::integer - (
               SELECT COUNT(*) FROM deliveries
                WHERE destination = %(destination)s AND state = 'pending'
                  AND lease_until IS NOT NULL AND lease_until >= %(now)s)))::integer AS n
), due AS (
    SELECT d.id FROM deliveries d
     WHERE d.destination = %(destination)s AND d.state = 'pending'
       AND d.next_attempt_at <= %(now)s
       AND (d.lease_until IS NULL OR d.lease_until < %(now)s)
       AND (d.ordering_key IS NULL OR NOT EXISTS (
              SELECT 1 FROM deliveries p
               WHERE p.destination = d.destination AND p.state = 'pending'
                 AND p.ordering_key = d.ordering_key AND p.id < d.id))
     ORDER BY d.next_attempt_at, d.id
     LIMIT (SELECT n FROM room)
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE deliveries d
       SET lease_until = %(lease_until)s, attempts = d.attempts + 1, updated_at = %(now)s,
           lease_seq = d.lease_seq + 1
      FROM due WHERE d.id = due.id
    RETURNING d.id, d.event_id, d.attempts, d.created_at, d.lease_seq, d.next_attempt_at
)
SELECT room.n, c.id, c.event_id, c.attempts, c.created_at, c.lease_seq
  FROM room LEFT JOIN claimed c ON true
 ORDER BY c.next_attempt_at, c.id;

-- name: next_due
SELECT MIN(CASE WHEN d.lease_until IS NULL THEN d.next_attempt_at
                ELSE GREATEST(d.next_attempt_at, d.lease_until) END)
  FROM deliveries d
 WHERE d.destination = %(destination)s AND d.state = 'pending'
   AND (d.ordering_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM deliveries p
           WHERE p.destination = d.destination AND p.state = 'pending'
             AND p.ordering_key = d.ordering_key AND p.id < d.id));

-- name: insert_attempt
INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status, error,
                      response_excerpt, outcome, response_headers)
SELECT %(id)s::bigint, %(number)s::integer, %(started_at)s::double precision,
       %(duration_ms)s::double precision, %(status)s::integer, %(error)s::text,
       %(excerpt)s::text, %(outcome)s::text, %(headers)s::text
 WHERE EXISTS (SELECT 1 FROM deliveries d
                WHERE d.id = %(id)s::bigint AND d.lease_seq = %(lease)s::bigint
                  AND d.state = 'pending' AND d.lease_until IS NOT NULL
                  AND (NOT %(strict)s::boolean OR d.lease_until >= %(now)s::double precision));

-- name: finish_attempt
UPDATE deliveries
   SET state = %(state)s::text, next_attempt_at = %(next_attempt_at)s::double precision,
       lease_until = NULL, updated_at = %(now)s::double precision,
       last_status = %(status)s::integer, last_error = %(error)s::text,
       delivered_at = CASE WHEN %(state)s::text = 'delivered' THEN %(now)s::double precision
                           ELSE delivered_at END
 WHERE id = %(id)s::bigint AND lease_seq = %(lease)s::bigint AND state = 'pending'
   AND lease_until IS NOT NULL
   AND (NOT %(strict)s::boolean OR lease_until >= %(now)s::double precision)
RETURNING destination, state, created_at;

-- name: release_lease
UPDATE deliveries
   SET lease_until = NULL, attempts = GREATEST(0, attempts - 1), updated_at = %(now)s
 WHERE id = %(id)s AND lease_seq = %(lease)s AND state = 'pending';

-- name: insert_rejection
INSERT INTO rejections (at, source, status, reason, remote_addr, method, headers)
VALUES (%s, %s, %s, %s, %s, %s, %s);

-- name: trim_rejections
DELETE FROM rejections WHERE id <= (SELECT MAX(id) FROM rejections) - %(keep)s;

-- name: pending_count
SELECT COUNT(*) FROM deliveries WHERE destination = %s AND state = 'pending';

-- name: destination_states
SELECT destination, paused, paused_at, reason FROM destination_state;

-- name: set_paused
INSERT INTO destination_state (destination, paused, paused_at, reason, updated_at)
VALUES (%(destination)s, %(paused)s, %(paused_at)s, %(reason)s, %(now)s)
ON CONFLICT (destination) DO UPDATE
   SET paused = excluded.paused, paused_at = excluded.paused_at, reason = excluded.reason,
       updated_at = excluded.updated_at;

-- name: circuits
SELECT destination, circuit, opened_at, failing_since FROM destination_state;

-- name: set_circuit
INSERT INTO destination_state (destination, updated_at, circuit, opened_at, failing_since)
VALUES (%(destination)s, %(now)s, %(circuit)s, %(opened_at)s, %(failing_since)s)
ON CONFLICT (destination) DO UPDATE
   SET circuit = excluded.circuit, opened_at = excluded.opened_at,
       failing_since = excluded.failing_since, updated_at = excluded.updated_at;

-- name: due_destinations
-- The polling fallback: destinations with work due now, wherever it was committed.
SELECT DISTINCT destination FROM deliveries
 WHERE state = 'pending' AND next_attempt_at <= %(now)s
   AND (lease_until IS NULL OR lease_until < %(now)s);

-- name: prune_delivered
DELETE FROM events WHERE id IN (
    SELECT e.id FROM events e
     WHERE e.received_at < %(before)s
       AND NOT EXISTS (SELECT 1 FROM deliveries d
                        WHERE d.event_id = e.id AND d.state != 'delivered')
     LIMIT %(batch)s);

-- name: prune_dead
DELETE FROM events WHERE id IN (
    SELECT e.id FROM events e
     WHERE e.received_at < %(before)s
       AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = 'dead')
       AND NOT EXISTS (SELECT 1 FROM deliveries d
                        WHERE d.event_id = e.id AND d.state = 'pending')
     LIMIT %(batch)s);

-- name: prune_rejections
DELETE FROM rejections WHERE id IN (
    SELECT id FROM rejections WHERE at < %(before)s LIMIT %(batch)s);

-- name: redact_delivered
UPDATE events SET body = ''::bytea, contact = NULL, redacted_at = %(now)s
 WHERE id IN (
    SELECT e.id FROM events e
     WHERE e.received_at < %(before)s AND e.redacted_at IS NULL
       AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
       AND NOT EXISTS (SELECT 1 FROM deliveries d
                        WHERE d.event_id = e.id AND d.state != 'delivered')
     LIMIT %(batch)s);

-- name: gauges_pending
SELECT destination, COUNT(*), MIN(created_at) FROM deliveries
 WHERE state = 'pending' GROUP BY destination;

-- name: gauges_dead
SELECT destination, COUNT(*) FROM dead_unreplayed GROUP BY destination;

-- name: database_size
SELECT pg_database_size(current_database());

-- name: payloads
SELECT id, source, content_type, headers, body, received_at, event_type, occurred_at,
       parent_id, provider, channel, provider_type, subject, contact, conversation, stale,
       origin
  FROM events WHERE id = ANY(%(ids)s);

-- name: event_by_id
SELECT id, source, received_at, occurred_at, event_type, idempotency_key, content_type,
       remote_addr, headers, body, redacted_at, parent_id, provider, channel, provider_type,
       subject, contact, conversation, stale, origin
  FROM events WHERE id = %s;

-- name: event_items
-- The items split from a request (docs/events.md), in the order they were stored.
SELECT id, event_type, idempotency_key FROM events WHERE parent_id = %s ORDER BY received_at, id;

-- name: event_deliveries
SELECT id, destination, state, attempts, next_attempt_at, created_at, delivered_at,
       last_status, last_error, replay_of
  FROM deliveries WHERE event_id = %s ORDER BY id;

-- name: delivery_attempts
SELECT number, started_at, duration_ms, status, error, response_excerpt, outcome,
       response_headers
  FROM attempts WHERE delivery_id = %s ORDER BY id;

-- name: events_after
-- relay tail: events by insert order (seq). With several relays, an event whose
-- transaction commits after a later-numbered one's can be passed over by a tail that
-- already read past it (see docs/scale-out.md).
SELECT seq, id, received_at, source, event_type, idempotency_key FROM events
 WHERE seq > %(after)s AND (%(source)s::text IS NULL OR source = %(source)s::text)
 ORDER BY seq LIMIT %(limit)s;

-- name: latest_position
SELECT COALESCE(MAX(seq), 0) FROM events;

-- name: dead_groups
SELECT destination, last_error, COUNT(*), MAX(updated_at) FROM dead_unreplayed
 GROUP BY destination, last_error ORDER BY COUNT(*) DESC LIMIT %s;

-- name: stats_sources
SELECT source, COUNT(*) FROM events WHERE received_at >= %s GROUP BY source;

-- name: stats_rejections
SELECT source, COUNT(*) FROM rejections WHERE at >= %s GROUP BY source;

-- name: delivered_destinations
WITH RECURSIVE d(name) AS (
    SELECT MIN(destination) FROM deliveries WHERE state = 'delivered'
    UNION ALL
    SELECT (SELECT MIN(destination) FROM deliveries
             WHERE state = 'delivered' AND destination > d.name)
      FROM d WHERE d.name IS NOT NULL)
SELECT name FROM d WHERE name IS NOT NULL;

-- name: delivered_since
SELECT COUNT(*) FROM deliveries
 WHERE state = 'delivered' AND destination = %s AND updated_at >= %s;

-- name: rejections_latest
SELECT at, source, status, reason, remote_addr, method, headers, id FROM rejections
 WHERE (%(source)s::text IS NULL OR source = %(source)s::text)
   AND (%(since)s::double precision IS NULL OR at >= %(since)s::double precision)
   AND (%(until)s::double precision IS NULL OR at < %(until)s::double precision)
   AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
 ORDER BY id DESC LIMIT %(limit)s;

-- name: routing_inputs
SELECT id, event_type, headers, body FROM events WHERE id = ANY(%(ids)s);

-- name: item_counts
-- How many items each of these requests was split into (events_parent).
SELECT parent_id, count(*) FROM events WHERE parent_id = ANY(%(ids)s) GROUP BY parent_id;

-- name: audit_latest
SELECT id, at, actor, origin, action, target, params, result FROM audit
 WHERE (%(since)s::double precision IS NULL OR at >= %(since)s::double precision)
   AND (%(until)s::double precision IS NULL OR at < %(until)s::double precision)
   AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
   AND (%(action)s::text IS NULL OR action = %(action)s::text)
 ORDER BY id DESC LIMIT %(limit)s;

-- name: events_by_prefix
SELECT id FROM events WHERE id >= %(prefix)s AND id < %(prefix)s || '~' ORDER BY id LIMIT 2;

-- name: audit_insert
INSERT INTO audit (at, actor, origin, action, target, params, result, request_id)
VALUES (%(at)s, %(actor)s, %(origin)s, %(action)s, %(target)s, %(params)s, %(result)s,
        %(request_id)s)
ON CONFLICT (request_id) WHERE request_id IS NOT NULL DO NOTHING;

-- name: audit_answered
SELECT result, params FROM audit WHERE request_id = %s;

-- name: lock_replay
-- Replays with a request id take turns across the cluster, so the same request sent to
-- two relays at once makes its deliveries once.
SELECT pg_advisory_xact_lock(hashtext('relay.replay'));

-- name: replay_delivery
INSERT INTO deliveries (event_id, destination, next_attempt_at, created_at, updated_at,
                        ordering_key, replay_of)
SELECT %(event_id)s::text, %(destination)s::text, %(now)s::double precision,
       %(now)s::double precision, %(now)s::double precision, %(ordering_key)s::text,
       %(replay_of)s::bigint
 WHERE %(again)s::boolean OR %(replay_of)s::bigint IS NULL
    OR NOT EXISTS (SELECT 1 FROM deliveries r WHERE r.replay_of = %(replay_of)s::bigint)
    OR (SELECT o.state FROM deliveries o WHERE o.id = %(replay_of)s::bigint) != 'dead'
RETURNING id;

-- name: prune_audit
DELETE FROM audit WHERE id IN (
    SELECT id FROM audit WHERE at < %(before)s LIMIT %(batch)s);

-- name: last_received
SELECT received_at FROM events WHERE source = %s ORDER BY received_at DESC LIMIT 1;

-- name: add_minutes
INSERT INTO minutes (minute, kind, name, metric, n) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (minute, kind, name, metric) DO UPDATE SET n = minutes.n + excluded.n;

-- name: trim_minutes
DELETE FROM minutes WHERE minute < %(before)s;

-- name: minutes_since
SELECT minute, kind, name, metric, n FROM minutes WHERE minute >= %(since)s;

-- name: minutes_between
SELECT kind, name, metric, SUM(n)::bigint FROM minutes
 WHERE minute >= %(first)s AND minute < %(end)s GROUP BY kind, name, metric;

-- name: beat
INSERT INTO heartbeats (node, started, beat) VALUES (%(node)s, %(started)s, %(now)s)
ON CONFLICT (node) DO UPDATE SET beat = excluded.beat;

-- name: forget_beats
DELETE FROM heartbeats WHERE beat < %(before)s;

-- name: last_beat
SELECT MAX(beat) FROM heartbeats;

-- name: catch_up_open
INSERT INTO catch_ups (source, since, until, reason, state, created_at)
VALUES (%(source)s, %(since)s, %(until)s, %(reason)s, 'open', %(now)s)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: catch_up_tried
UPDATE catch_ups SET tries = tries + 1 WHERE id = %(id)s;

-- name: catch_up_close
UPDATE catch_ups
   SET state = %(state)s, finished_at = %(now)s, fetched = %(fetched)s, new = %(new)s,
       known = %(known)s, requested = %(requested)s, error = %(error)s
 WHERE id = %(id)s;

-- name: catch_ups_open
SELECT id, source, since, until, reason, tries, created_at, error
  FROM catch_ups WHERE state = 'open' ORDER BY id;

-- name: known_keys
SELECT idempotency_key FROM events
 WHERE source = %(source)s AND idempotency_key = ANY(%(keys)s);

-- name: incident_insert
INSERT INTO incidents (subject, kind, status, since, last_failure, resolved_at, failures,
                       dominant, counts, samples, left_to_replay)
VALUES (%(subject)s, %(kind)s, %(status)s, %(since)s, %(last_failure)s, %(resolved_at)s,
        %(failures)s, %(dominant)s, %(counts)s, %(samples)s, %(left_to_replay)s)
RETURNING id;

-- name: incident_update
UPDATE incidents
   SET status = %(status)s, last_failure = %(last_failure)s, resolved_at = %(resolved_at)s,
       failures = %(failures)s, dominant = %(dominant)s, counts = %(counts)s,
       samples = %(samples)s, left_to_replay = %(left_to_replay)s
 WHERE id = %(id)s
RETURNING id;

-- name: incidents_of
SELECT id, subject, kind, status, since, last_failure, resolved_at, failures, dominant,
       counts, samples, left_to_replay
  FROM incidents
 WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
   AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
 ORDER BY id DESC LIMIT %(limit)s;

-- name: prune_incidents
DELETE FROM incidents WHERE id IN (
    SELECT id FROM incidents WHERE status = 'resolved' AND resolved_at < %(before)s
     LIMIT %(batch)s);
