-- 0010: the per-minute rollup behind the overview (schema.sql says what it holds), and
-- each attempt's response headers.

ALTER TABLE attempts ADD COLUMN response_headers TEXT;

CREATE TABLE minutes (
    minute  INTEGER NOT NULL,                -- unix time // 60
    kind    TEXT NOT NULL,                   -- 'source' or 'destination'
    name    TEXT NOT NULL,
    metric  TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (minute, kind, name, metric)
) WITHOUT ROWID;
