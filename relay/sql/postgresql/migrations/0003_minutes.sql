-- 0003: the per-minute rollup behind the overview, and each attempt's response headers, as
-- SQLite's 0010 (relay/sql/schema.sql says what they hold).

ALTER TABLE attempts ADD COLUMN response_headers TEXT;

CREATE TABLE minutes (
    minute  BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    name    TEXT NOT NULL,
    metric  TEXT NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (minute, kind, name, metric)
);
