//! HTTP tests: the real server on port 0, a real SQLite store in a temp directory.
//! One binary for all of them (faster to link than one per file).

mod crash;
mod helpers;
mod pages;
mod press;
mod privacy;
mod stats;
