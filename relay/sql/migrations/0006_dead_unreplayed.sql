-- 0006: "dead and not yet replayed" defined once, as a view; v_destination_health.dead now
-- counts what `relay stats`, the console and relay_dead_deliveries count (it counted dead
-- deliveries that had been replayed too).

CREATE VIEW dead_unreplayed AS
SELECT d.* FROM deliveries d
 WHERE d.state = 'dead' AND NOT EXISTS (SELECT 1 FROM deliveries r WHERE r.replay_of = d.id);

DROP VIEW v_destination_health;

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
