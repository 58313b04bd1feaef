-- 0008: a fencing id for leases. Every claim (and every delivery handed over at commit)
-- gets the next lease_seq; an outcome is written only under the lease it was claimed with,
-- so a late result (an agent's, after its connection was lost and the delivery went again)
-- changes nothing.

ALTER TABLE deliveries ADD COLUMN lease_seq INTEGER NOT NULL DEFAULT 0;
