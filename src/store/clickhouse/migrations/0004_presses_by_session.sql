-- A session's presses, for "your presses": each press's session and id, kept
-- by a view on the events. The events are ordered by session too, but a
-- visitor's count then read a granule of 8,192 events from every part, and
-- its time grew with the parts (BENCHMARKS.md). Here a granule is 1,024 rows
-- of two columns. A retried insert leaves duplicates until merges, as in the
-- events: readers count distinct ids. The presses stored before the view are
-- copied after it is made, so that every press is in one or the other: one
-- inserted meanwhile may be in both, and counts once.
CREATE TABLE IF NOT EXISTS {db}.presses_by_session (
    session_id UUID,
    event_id   UUID
)
ENGINE = ReplacingMergeTree()
ORDER BY (session_id, event_id)
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.presses_by_session_mv
TO {db}.presses_by_session
AS SELECT session_id, event_id
FROM {db}.button_presses
WHERE action = 'PressButton';

INSERT INTO {db}.presses_by_session (session_id, event_id)
SELECT session_id, event_id
FROM {db}.button_presses
WHERE action = 'PressButton'
