//! The domain: what a press is, where it came from, and who may know.

pub(crate) mod client_ip;
pub(crate) mod event;
pub(crate) mod row;

pub use client_ip::{ClientIp, TrustedProxies};
pub use event::{Action, Location, PressEvent};
