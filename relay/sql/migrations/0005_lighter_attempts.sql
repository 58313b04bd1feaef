-- 0005: one index less on the hottest insert. attempts_started (from 0004) was read by no
-- query of relay's, and keeping it cost about a quarter of the writer's time per delivery
-- (bench: the backlog drain). Attempts are in id order, which is time order: ad-hoc
-- queries by time can range over ids, or join through deliveries.
DROP INDEX attempts_started;
