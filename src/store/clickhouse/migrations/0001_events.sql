CREATE TABLE IF NOT EXISTS {db}.button_presses (
    event_id         UUID,
    session_id       UUID,
    timestamp        Int64,
    action           String,
    country_name     String,
    country_code     String,
    subdivision_name String,
    subdivision_code String,
    city_name        String,
    cohort           Nullable(Int32),
    latitude         Nullable(Float64),
    longitude        Nullable(Float64),
    event_date       Date DEFAULT toDate(toDateTime(intDiv(timestamp, 1000000)))
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_date)
ORDER BY (session_id, event_id);

CREATE TABLE IF NOT EXISTS {db}.presses_by_country (
    country_code String,
    country_name AggregateFunction(anyLast, String),
    presses      AggregateFunction(uniqExact, UUID)
)
ENGINE = AggregatingMergeTree()
ORDER BY country_code;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.presses_by_country_mv
TO {db}.presses_by_country
AS SELECT
    country_code,
    anyLastState(country_name) AS country_name,
    uniqExactState(event_id) AS presses
FROM {db}.button_presses
WHERE action = 'PressButton'
GROUP BY country_code;
