-- Presses per session and per country and minute, kept by the write transaction
-- beside presses_by_country, so that "presses in this session" and "presses from
-- your country in the last hour" read a row or 61 instead of counting events
-- (flat as the file grows); they replace the two partial indexes on events.
CREATE TABLE presses_by_session (
    session_id TEXT PRIMARY KEY,
    presses    INTEGER NOT NULL
) WITHOUT ROWID;
-- minute: minutes since the Unix epoch, UTC.
CREATE TABLE presses_by_country_minute (
    country_code TEXT NOT NULL,
    minute       INTEGER NOT NULL,
    presses      INTEGER NOT NULL,
    PRIMARY KEY (country_code, minute)
) WITHOUT ROWID;
INSERT INTO presses_by_session (session_id, presses)
SELECT session_id, count(*) FROM events
WHERE action = 'PressButton'
GROUP BY session_id;
INSERT INTO presses_by_country_minute (country_code, minute, presses)
SELECT country_code, timestamp / 60000000, count(*) FROM events
WHERE action = 'PressButton'
GROUP BY country_code, timestamp / 60000000;
DROP INDEX events_presses_by_session;
DROP INDEX events_presses_by_country_time;
