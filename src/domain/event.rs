//! The event every page view and press becomes. It carries a coarse location and a
//! random session id, never the address it was looked up from: [`PressEvent`] has
//! no field that could hold one, and [`crate::domain::ClientIp`] cannot be serialized.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What the visitor did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Opened the page with the button.
    EnterPage,
    /// Pressed the button.
    PressButton,
}

impl Action {
    /// The name used on the wire and in stores (the original app's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::EnterPage => "EnterPage",
            Action::PressButton => "PressButton",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "EnterPage" => Some(Action::EnterPage),
            "PressButton" => Some(Action::PressButton),
            _ => None,
        }
    }
}

/// Where a session comes from, as precise as the geo database allows.
/// Text fields are empty when unknown (as in the original app's schema).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// ISO 3166-1 alpha-2 code, or `--` when the address is not in the database.
    pub country_code: String,
    /// English country name, or `Unknown`.
    pub country_name: String,
    /// First-level subdivision (state, region), when the database has it.
    #[serde(default)]
    pub subdivision_name: String,
    /// ISO 3166-2 subdivision code without the country prefix, when known.
    #[serde(default)]
    pub subdivision_code: String,
    /// City name, when the database has it.
    #[serde(default)]
    pub city_name: String,
    /// Latitude in degrees: the city's when known, else the country's centroid.
    #[serde(default)]
    pub latitude: Option<f64>,
    /// Longitude in degrees, same rule as `latitude`.
    #[serde(default)]
    pub longitude: Option<f64>,
}

impl Location {
    /// Country code used for addresses the database does not know.
    pub const UNKNOWN_CODE: &'static str = "--";

    /// The location of an address the database does not know.
    pub fn unknown() -> Self {
        Location {
            country_code: Self::UNKNOWN_CODE.to_owned(),
            country_name: "Unknown".to_owned(),
            subdivision_name: String::new(),
            subdivision_code: String::new(),
            city_name: String::new(),
            latitude: None,
            longitude: None,
        }
    }
}

/// One thing a visitor did. `event_id` (UUIDv7) is the idempotency key in every
/// store; `session_id` keys the Kafka message so a session's events stay in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PressEvent {
    /// Unique id, time-ordered (UUIDv7).
    pub event_id: Uuid,
    /// Random per-session id (UUIDv4), from the signed session cookie.
    pub session_id: Uuid,
    /// Microseconds since the Unix epoch, UTC.
    pub timestamp: i64,
    /// What happened.
    pub action: Action,
    /// Where the session comes from.
    #[serde(flatten)]
    pub location: Location,
    /// Experiment cohort: 0 for visitors unless configured, `None` for generated data.
    pub cohort: Option<i32>,
}

impl PressEvent {
    /// A new event happening `at`, with a fresh time-ordered id.
    pub fn new(
        action: Action,
        session_id: Uuid,
        location: Location,
        cohort: Option<i32>,
        at: SystemTime,
    ) -> Self {
        Self::with_rng(action, session_id, location, cohort, at, &mut rand::rng())
    }

    /// Like [`Self::new`], drawing the id's random bits from `rng` (reproducible
    /// events for `generate --seed`).
    pub fn with_rng<R: rand::Rng + ?Sized>(
        action: Action,
        session_id: Uuid,
        location: Location,
        cohort: Option<i32>,
        at: SystemTime,
        rng: &mut R,
    ) -> Self {
        let timestamp = micros_since_epoch(at);
        let millis = u64::try_from(timestamp / 1000).unwrap_or(0);
        let event_id = uuid::Builder::from_unix_timestamp_millis(millis, &rng.random()).into_uuid();
        PressEvent {
            event_id,
            session_id,
            timestamp,
            action,
            location,
            cohort,
        }
    }
}

/// Microseconds since the Unix epoch (0 for times before it).
pub fn micros_since_epoch(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn new_event_ids_are_v7_and_ordered_by_time() {
        let loc = Location::unknown();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = PressEvent::new(
            Action::PressButton,
            Uuid::new_v4(),
            loc.clone(),
            Some(0),
            t0,
        );
        let b = PressEvent::new(
            Action::PressButton,
            Uuid::new_v4(),
            loc,
            Some(0),
            t0 + Duration::from_millis(5),
        );
        assert_eq!(a.event_id.get_version_num(), 7);
        assert!(a.event_id < b.event_id);
        assert_eq!(a.timestamp, 1_700_000_000_000_000);
    }

    #[test]
    fn action_names_round_trip() {
        for a in [Action::EnterPage, Action::PressButton] {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::parse("pressbutton"), None);
    }
}

#[cfg(test)]
impl PressEvent {
    /// A press now, from nowhere in particular, in a session of its own: for tests.
    pub fn example() -> Self {
        PressEvent::new(
            Action::PressButton,
            uuid::Uuid::new_v4(),
            Location::unknown(),
            None,
            std::time::SystemTime::now(),
        )
    }
}
