//! Press statistics: what `/stats` and `/api/stats` show, whatever store they come
//! from. Only `PressButton` events count as presses.
//!
//! The store-wide part (total, per country) is the same for every viewer, so
//! [`StatsService`] caches it for a short interval behind a single-flight lock:
//! a thousand viewers refreshing cost one query per interval, not a thousand.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::domain::Location;
use crate::domain::event::micros_since_epoch;

/// Presses from one country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountryPresses {
    /// ISO code, or `--`.
    pub country_code: String,
    /// English name.
    pub country_name: String,
    /// How many presses.
    pub presses: u64,
}

/// The part of the statistics every viewer shares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalStats {
    /// All presses ever.
    pub total: u64,
    /// Per country, biggest first (ties by code).
    pub by_country: Vec<CountryPresses>,
}

/// Presses in one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionStats {
    /// How many.
    pub presses: u64,
}

/// Presses from the viewer's country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct YourCountry {
    /// ISO code.
    pub country_code: String,
    /// English name.
    pub country_name: String,
    /// Since the beginning.
    pub all_time: u64,
    /// In the last hour.
    pub last_hour: u64,
}

/// Everything one viewer sees; the JSON of `/api/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// All presses ever.
    pub total: u64,
    /// Per country, biggest first.
    pub by_country: Vec<CountryPresses>,
    /// The viewer's session.
    pub session: SessionStats,
    /// The viewer's country.
    pub your_country: YourCountry,
}

/// Why statistics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// Events go to Kafka and no store to read them back is configured.
    #[error("events go to Kafka and no statistics store is configured (--stats-from)")]
    NotConfigured,
    /// The store failed to answer.
    #[error("cannot read statistics from {store}")]
    Read {
        /// Which store (and where), never with credentials.
        store: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StatsError {
    /// A failed read from `store`, keeping its cause.
    pub fn read(
        store: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StatsError::Read {
            store: store.into(),
            source: source.into(),
        }
    }
}

/// The statistics source when events go to Kafka and no store to read them back
/// is configured: every read says so.
pub struct NotConfigured;

#[async_trait]
impl StatsSource for NotConfigured {
    async fn global(&self) -> Result<GlobalStats, StatsError> {
        Err(StatsError::NotConfigured)
    }
    async fn session_presses(&self, _: Uuid) -> Result<u64, StatsError> {
        Err(StatsError::NotConfigured)
    }
    async fn country_presses_since(&self, _: &str, _: i64) -> Result<u64, StatsError> {
        Err(StatsError::NotConfigured)
    }
}

/// A store that can answer the statistics queries.
#[async_trait]
pub trait StatsSource: Send + Sync + 'static {
    /// Total and per-country presses.
    async fn global(&self) -> Result<GlobalStats, StatsError>;
    /// Presses in session `id`.
    async fn session_presses(&self, id: Uuid) -> Result<u64, StatsError>;
    /// Presses from `country_code` at or after `since_us` (µs since epoch).
    async fn country_presses_since(
        &self,
        country_code: &str,
        since_us: i64,
    ) -> Result<u64, StatsError>;
}

type Cached<T> = Mutex<Option<(Instant, T)>>;

/// Statistics with the shared parts cached for `ttl`.
pub struct StatsService {
    source: Arc<dyn StatsSource>,
    ttl: Duration,
    global: Cached<Arc<GlobalStats>>,
    last_hour: Mutex<HashMap<String, (Instant, u64)>>,
}

impl StatsService {
    /// Caches `source`'s shared answers for `ttl`.
    pub fn new(source: Arc<dyn StatsSource>, ttl: Duration) -> Self {
        StatsService {
            source,
            ttl,
            global: Mutex::new(None),
            last_hour: Mutex::new(HashMap::new()),
        }
    }

    /// The shared part, asked of the store now (the cache is refreshed too).
    pub async fn global_fresh(&self) -> Result<Arc<GlobalStats>, StatsError> {
        let mut slot = self.global.lock().await;
        count_query("global");
        let g = Arc::new(self.source.global().await?);
        *slot = Some((Instant::now(), g.clone()));
        Ok(g)
    }

    /// The shared part, at most `ttl` old.
    pub async fn global(&self) -> Result<Arc<GlobalStats>, StatsError> {
        // Holding the lock across the query makes concurrent viewers wait for one
        // query instead of each sending their own.
        let mut slot = self.global.lock().await;
        if let Some((at, g)) = slot.as_ref() {
            if at.elapsed() < self.ttl {
                return Ok(g.clone());
            }
        }
        count_query("global");
        let g = Arc::new(self.source.global().await?);
        *slot = Some((Instant::now(), g.clone()));
        Ok(g)
    }

    async fn last_hour(&self, code: &str) -> Result<u64, StatsError> {
        let mut map = self.last_hour.lock().await;
        if let Some((at, n)) = map.get(code) {
            if at.elapsed() < self.ttl {
                return Ok(*n);
            }
        }
        let since = micros_since_epoch(SystemTime::now() - Duration::from_secs(3600));
        count_query("last_hour");
        let n = self.source.country_presses_since(code, since).await?;
        map.insert(code.to_owned(), (Instant::now(), n));
        Ok(n)
    }

    /// Everything a viewer from `location` in session `session_id` sees, with
    /// countries below `min_count` presses left out (see [`public`]).
    pub async fn for_viewer(
        &self,
        session_id: Uuid,
        location: &Location,
        min_count: u64,
    ) -> Result<Stats, StatsError> {
        let global = self.global().await?;
        count_query("session");
        let session = self.source.session_presses(session_id).await?;
        let last_hour = self.last_hour(&location.country_code).await?;
        let all_time = global
            .by_country
            .iter()
            .find(|c| c.country_code == location.country_code)
            .map_or(0, |c| c.presses)
            // The two figures come from different cache fills; never show more
            // presses in the last hour than ever.
            .max(last_hour);
        Ok(Stats {
            total: global.total,
            by_country: public(&global.by_country, min_count),
            session: SessionStats { presses: session },
            your_country: YourCountry {
                country_code: location.country_code.clone(),
                country_name: location.country_name.clone(),
                all_time,
                last_hour,
            },
        })
    }
}

/// Counts one query to the statistics store (`/metrics`: what viewers cost the
/// database).
fn count_query(query: &'static str) {
    metrics::counter!(crate::telemetry::metric::STATS_QUERIES, "query" => query).increment(1);
}

/// The countries with at least `min_count` presses: what public views show, so
/// that a country with one or two visitors does not single them out.
pub fn public(countries: &[CountryPresses], min_count: u64) -> Vec<CountryPresses> {
    countries
        .iter()
        .filter(|c| c.presses >= min_count)
        .cloned()
        .collect()
}

/// Share of `part` in `total` as a percentage string with one decimal.
pub fn share(part: u64, total: u64) -> String {
    if total == 0 {
        return "0.0%".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize);

    #[async_trait]
    impl StatsSource for Counting {
        async fn global(&self) -> Result<GlobalStats, StatsError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(GlobalStats {
                total: 3,
                by_country: vec![],
            })
        }
        async fn session_presses(&self, _: Uuid) -> Result<u64, StatsError> {
            Ok(0)
        }
        async fn country_presses_since(&self, _: &str, _: i64) -> Result<u64, StatsError> {
            Ok(0)
        }
    }

    // A stand-in source that counts queries: the point is the cache, not the store.
    #[tokio::test]
    async fn many_concurrent_viewers_cost_one_query_per_interval() {
        let source = Arc::new(Counting(AtomicUsize::new(0)));
        let svc = Arc::new(StatsService::new(source.clone(), Duration::from_secs(60)));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let svc = svc.clone();
                tokio::spawn(async move { svc.global().await.unwrap().total })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 3);
        }
        assert_eq!(source.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn public_views_hide_countries_below_the_minimum() {
        let row = |code: &str, presses| CountryPresses {
            country_code: code.into(),
            country_name: code.into(),
            presses,
        };
        let all = [row("US", 9), row("FI", 3), row("IS", 2)];
        let shown: Vec<String> = public(&all, 3)
            .into_iter()
            .map(|c| c.country_code)
            .collect();
        assert_eq!(shown, ["US", "FI"]);
        assert_eq!(public(&all, 1).len(), 3);
    }

    #[test]
    fn share_is_a_percentage() {
        assert_eq!(share(1, 3), "33.3%");
        assert_eq!(share(0, 0), "0.0%");
    }
}
