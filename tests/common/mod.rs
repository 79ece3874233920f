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

/// Whether process `pid` itself holds a socket listening on `port`. A port from
/// [`free_port`] can be taken by someone else before a child binds it; a client
/// would then reach a stranger, so a child started on it is checked with this.
/// Read from `/proc`: the listening sockets' inodes, then the process's descriptors.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let local = format!(":{port:04X}");
    let listening: std::collections::HashSet<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    // sl local_address rem_address st ... inode (the 10th column)
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    let here = cols.get(1)?.ends_with(&local) && *cols.get(3)? == "0A";
                    here.then(|| cols.get(9).map(|s| (*s).to_owned()))?
                })
                .collect::<Vec<_>>()
        })
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| {
            target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:[")?.strip_suffix(']'))
                .is_some_and(|inode| listening.contains(inode))
        })
}
