CREATE TABLE button_presses (
    event_id         uuid PRIMARY KEY,
    session_id       uuid NOT NULL,
    "timestamp"      bigint NOT NULL,
    action           text NOT NULL,
    country_name     text NOT NULL,
    country_code     text NOT NULL,
    subdivision_name text NOT NULL,
    subdivision_code text NOT NULL,
    city_name        text NOT NULL,
    cohort           integer NULL,
    latitude         double precision NULL,
    longitude        double precision NULL
);
COMMENT ON COLUMN button_presses."timestamp" IS 'microseconds since the Unix epoch, UTC';
CREATE INDEX button_presses_session_presses
    ON button_presses (session_id) WHERE action = 'PressButton';
CREATE INDEX button_presses_country_time_presses
    ON button_presses (country_code, "timestamp") WHERE action = 'PressButton';
CREATE TABLE presses_by_country (
    country_code text PRIMARY KEY,
    country_name text NOT NULL,
    presses      bigint NOT NULL
);
