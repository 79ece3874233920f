//! HTTP tests: the server on port 0 in this process (or the real binary, for
//! `kill -9` and its logs), with a real SQLite store in a temporary directory.
//! One test binary for all of them (faster to link than one per file).

mod common;

mod api {
    mod crash;
    mod hostile;
    mod live;
    mod pages;
    mod press;
    mod privacy;
    mod stats;
}
