-- On-platform alternative to `button sink` for ClickHouse: ClickHouse reads the
-- topic itself through a Kafka-engine table, and a materialized view copies each
-- block into the same `button_presses` table that `button migrate` creates (run it
-- first: the dedup and the per-country aggregate live there).
--
-- Delivery: at-least-once. ClickHouse commits Kafka offsets after the block is
-- inserted; a crash in between inserts it again. The duplicates are harmless for
-- the statistics: `button_presses` is a ReplacingMergeTree keyed on event_id, and
-- `presses_by_country_minute` counts uniqExact(event_id). Nothing settles those
-- minutes into plain numbers or rolls their days up here (a running `button
-- sink` does, for every writer's minutes, every 5 minutes), so reading the
-- counts costs more as presses accumulate; they stay exact. The same SQL works on
-- ClickHouse 18.16 and on current versions.
--
-- On Aiven, do not run the first statement: create a ClickHouse-Kafka service
-- integration instead (see aiven-clickhouse-integration.json); it creates the
-- Kafka-engine table in the database `service_<kafka service name>`. Then run the
-- materialized view below with `FROM service_<kafka service name>.button_presses_queue`.

CREATE TABLE IF NOT EXISTS button_presses_queue
(
    session_id       String,
    timestamp        Int64,
    action           String,
    country_name     String,
    country_code     String,
    subdivision_name String,
    subdivision_code String,
    city_name        String,
    cohort           Nullable(Int32),
    event_id         Nullable(String),
    latitude         Nullable(Float64),
    longitude        Nullable(Float64)
)
ENGINE = Kafka
SETTINGS kafka_broker_list = 'kafka.example.com:9092',
         kafka_topic_list = 'button_presses',
         kafka_group_name = 'clickhouse-button-presses',
         kafka_format = 'JSONEachRow';  -- 'AvroConfluent' with --format avro (recent ClickHouse only)

CREATE MATERIALIZED VIEW IF NOT EXISTS button_presses_from_kafka TO button_presses AS
SELECT
    toUUID(assumeNotNull(event_id)) AS event_id,
    toUUID(session_id)              AS session_id,
    timestamp,
    action,
    country_name,
    country_code,
    subdivision_name,
    subdivision_code,
    city_name,
    cohort,
    latitude,
    longitude
FROM button_presses_queue
-- Events without an id (from the original app) cannot be deduplicated; skip them.
WHERE event_id IS NOT NULL;
