
    CREATE TABLE events (
        event_id         TEXT PRIMARY KEY,
        session_id       TEXT NOT NULL,
        timestamp        INTEGER NOT NULL,
        action           TEXT NOT NULL,
        country_code     TEXT NOT NULL,
        country_name     TEXT NOT NULL,
        subdivision_name TEXT NOT NULL,
        subdivision_code TEXT NOT NULL,
        city_name        TEXT NOT NULL,
        latitude         REAL,
        longitude        REAL,
        cohort           INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX events_presses_by_session
        ON events (session_id) WHERE action = 'PressButton';
    CREATE INDEX events_presses_by_country_time
        ON events (country_code, timestamp) WHERE action = 'PressButton';
    -- Maintained in the same transaction as the inserts, so reading the totals
    -- never scans the events.
    CREATE TABLE presses_by_country (
        country_code TEXT PRIMARY KEY,
        country_name TEXT NOT NULL,
        presses      INTEGER NOT NULL
    ) WITHOUT ROWID;
