-- Counts that stay cheap to read however many events are stored. The exact
-- count of distinct events (a retried insert leaves duplicates until merges)
-- needs every event id: per country and minute, those ids are kept as
-- uniqExact states, with a count of the rows inserted into the minute.
-- `button sink` settles, every few seconds, each minute inserted into since
-- its last settling into a plain number in presses_by_country_minute_totals,
-- whose version is that row count, so the latest settling wins. Readers add
-- the settled numbers, and count a minute from its ids only when nothing
-- settled it since its last insert. The per-country states of
-- the first schema, which held every id, go.
CREATE TABLE IF NOT EXISTS {db}.presses_by_country_minute (
    country_code String,
    minute       Int64,
    country_name AggregateFunction(anyLast, String),
    presses      AggregateFunction(uniqExact, UUID),
    inserted     AggregateFunction(count)
)
ENGINE = AggregatingMergeTree()
ORDER BY (country_code, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.presses_by_country_minute_mv
TO {db}.presses_by_country_minute
AS SELECT
    country_code,
    intDiv(timestamp, 60000000) AS minute,
    anyLastState(country_name) AS country_name,
    uniqExactState(event_id) AS presses,
    countState() AS inserted
FROM {db}.button_presses
WHERE action = 'PressButton'
GROUP BY country_code, minute;

CREATE TABLE IF NOT EXISTS {db}.presses_by_country_minute_totals (
    country_code String,
    minute       Int64,
    country_name String,
    presses      UInt64,
    inserted     UInt64
)
ENGINE = ReplacingMergeTree(inserted)
ORDER BY (country_code, minute);

INSERT INTO {db}.presses_by_country_minute (country_code, minute, country_name, presses, inserted)
SELECT
    country_code,
    intDiv(timestamp, 60000000),
    anyLastState(country_name),
    uniqExactState(event_id),
    countState()
FROM {db}.button_presses
WHERE action = 'PressButton'
GROUP BY country_code, intDiv(timestamp, 60000000);

INSERT INTO {db}.presses_by_country_minute_totals (country_code, minute, country_name, presses, inserted)
SELECT country_code, minute, anyLastMerge(country_name), uniqExactMerge(presses), countMerge(inserted)
FROM {db}.presses_by_country_minute
GROUP BY country_code, minute;

DROP TABLE IF EXISTS {db}.presses_by_country_mv;

DROP TABLE IF EXISTS {db}.presses_by_country
