-- 0003: the per-minute rollup behind the overview, as SQLite's 0010 (relay/sql/schema.sql
-- says what it holds).

CREATE TABLE minutes (
    minute  BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    name    TEXT NOT NULL,
    metric  TEXT NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (minute, kind, name, metric)
);
