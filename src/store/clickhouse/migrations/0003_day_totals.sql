-- The all-time figures, read per day instead of per minute. Per country and
-- day, presses_by_country_day counts the rows inserted (a view on the events,
-- beside the minutes' view: the same number as the day's minutes add up to).
-- `button sink`, when it settles, rolls each day whose minutes are all settled
-- up into one number in presses_by_country_day_totals, versioned by the rows
-- its minutes held: a day's total is current while the day's count still
-- equals that version; readers add up the minutes of any other day. A count
-- that ends up above its minutes' (this file run twice, a view that failed
-- where the other did not) only makes its day read from its minutes: slower,
-- still exact.
CREATE TABLE IF NOT EXISTS {db}.presses_by_country_day (
    country_code String,
    day          Int64,
    inserted     UInt64
)
ENGINE = SummingMergeTree()
ORDER BY (country_code, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.presses_by_country_day_mv
TO {db}.presses_by_country_day
AS SELECT
    country_code,
    intDiv(intDiv(timestamp, 60000000), 1440) AS day,
    count() AS inserted
FROM {db}.button_presses
WHERE action = 'PressButton'
GROUP BY country_code, day;

CREATE TABLE IF NOT EXISTS {db}.presses_by_country_day_totals (
    country_code String,
    day          Int64,
    country_name String,
    presses      UInt64,
    inserted     UInt64
)
ENGINE = ReplacingMergeTree(inserted)
ORDER BY (country_code, day);

INSERT INTO {db}.presses_by_country_day (country_code, day, inserted)
SELECT country_code, intDiv(minute, 1440), countMerge(inserted)
FROM {db}.presses_by_country_minute
GROUP BY country_code, intDiv(minute, 1440)
