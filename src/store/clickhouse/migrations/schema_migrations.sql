CREATE TABLE IF NOT EXISTS {db}.button_schema_migrations (
    version    UInt32,
    applied_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree()
ORDER BY version
