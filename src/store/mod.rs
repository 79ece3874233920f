//! Stores that keep events and answer the statistics queries.

pub mod sqlite;

pub use sqlite::SqliteStore;
