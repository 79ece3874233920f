-- Presses per session and per country and minute, kept by the write statement
-- beside presses_by_country, so that "presses in this session" and "presses from
-- your country in the last hour" read one row, or at most 61 (this minute and
-- the 60 before it), instead of counting events (flat as the table grows), and
-- so that a batch updates two small indexes' worth of rows instead of two index
-- entries per event (the partial indexes they replace halved the rate at which a
-- batch went in).
CREATE TABLE presses_by_session (
    session_id uuid PRIMARY KEY,
    presses    bigint NOT NULL
);
CREATE TABLE presses_by_country_minute (
    country_code text NOT NULL,
    minute       bigint NOT NULL,
    presses      bigint NOT NULL,
    PRIMARY KEY (country_code, minute)
);
COMMENT ON COLUMN presses_by_country_minute.minute IS 'minutes since the Unix epoch, UTC';
INSERT INTO presses_by_session (session_id, presses)
SELECT session_id, count(*) FROM button_presses
WHERE action = 'PressButton'
GROUP BY session_id;
INSERT INTO presses_by_country_minute (country_code, minute, presses)
SELECT country_code, "timestamp" / 60000000, count(*) FROM button_presses
WHERE action = 'PressButton'
GROUP BY country_code, "timestamp" / 60000000;
DROP INDEX button_presses_session_presses;
DROP INDEX button_presses_country_time_presses;
