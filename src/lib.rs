//! `button`: a button that does nothing, and a serious, private pipeline behind it.
//!
//! Every press becomes a [`domain::PressEvent`] (geolocated, never carrying the
//! address), is stored durably before the visitor is answered, and is counted by
//! country on the stats page. See the README for the architecture.

pub mod analyze;
pub mod cli;
pub mod config;
pub mod domain;
pub mod encoding;
pub mod generate;
pub mod geo;
pub mod kafka;
pub mod live;
pub mod migrate;
pub mod patterns;
pub mod pipeline;
pub mod publish;
pub mod replies;
mod retry;
pub mod session;
pub mod shutdown;
pub mod sink;
pub mod stats;
pub mod store;
pub mod tail;
pub mod telemetry;
mod tls;
pub mod web;
