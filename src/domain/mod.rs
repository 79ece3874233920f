//! The domain: what a press is, where it came from, and who may know.

pub mod client_ip;
pub mod event;
pub mod row;

pub use client_ip::{ClientIp, TrustedProxies};
pub use event::{Action, Location, PressEvent};
