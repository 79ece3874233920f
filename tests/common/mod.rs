//! The test kit, shared by every test crate (each mounts it with `mod common;`).
//!
//! - [`app`]: the server in this process on port 0, and visitors that keep their
//!   cookie ([`spawn_app`], [`TestApp`], [`Visitor`]);
//! - [`process`]: the `button` binary as a child process, for what only a real
//!   process shows (`kill -9`, its logs);
//! - [`services`]: the one way tests find the broker, the databases, Tansu and the
//!   browser, and what happens when one is missing;
//! - [`cli`]: settings parsed from flags exactly as the binary parses them;
//! - [`live`]: a dashboard viewer on `/stats/live` (Server-Sent Events);
//! - [`kafka`]: fresh topics, reading a topic back, a group's committed offsets;
//! - [`original`]: the original Python app as a producer (its schema, its framing);
//! - [`registry`]: a stand-in Confluent schema registry on port 0;
//! - [`tls`]: a CA the test makes and an HTTPS endpoint in front of a plain one;
//! - [`eventually`]: waiting for a condition, with a deadline.
//!
//! Each crate uses a part of the kit, so items unused by one crate are expected.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod cli;
pub mod kafka;
pub mod live;
pub mod original;
mod poll;
pub mod process;
pub mod registry;
pub mod services;
pub mod tls;

pub use app::{Reply, TestApp, Visitor, spawn_app, spawn_app_with, spawn_app_with_flags};
pub use poll::eventually;

/// A loopback port nothing listens on right now (the OS picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
