//! Press statistics: what `/stats` and `/api/stats` show, whatever store they come
//! from. Only `PressButton` events count as presses.
//!
//! The store-wide part (total, per country) is the same for every viewer, so
//! [`StatsService`] caches it for a short interval behind a single-flight lock:
//! a thousand viewers refreshing cost one query per interval, not a thousand.
//! A viewer's own figure (the session's count) is asked beside the shared part,
//! so a new visitor waits for the slower of the two, not for both in turn.

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

impl GlobalStats {
    /// The figures of `countries`: (code, name, presses) each, in any order.
    pub fn of(countries: impl IntoIterator<Item = (String, String, u64)>) -> Self {
        let mut by_country: Vec<CountryPresses> = countries
            .into_iter()
            .map(|(country_code, country_name, presses)| CountryPresses {
                country_code,
                country_name,
                presses,
            })
            .collect();
        by_country.sort_by(|a, b| {
            b.presses
                .cmp(&a.presses)
                .then_with(|| a.country_code.cmp(&b.country_code))
        });
        GlobalStats {
            total: by_country.iter().map(|c| c.presses).sum(),
            by_country,
        }
    }
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

impl Stats {
    /// The 1-based rank of the viewer's country among the countries shown.
    pub fn your_country_rank(&self) -> Option<usize> {
        self.by_country
            .iter()
            .position(|c| c.country_code == self.your_country.country_code)
            .map(|i| i + 1)
    }
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
    /// Presses from `country_code` at or after `since_us` (µs since epoch), the
    /// start of a minute (PostgreSQL keeps per-minute counts; every store is asked
    /// the same whole-minute window, so they agree).
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
        Ok(self.fill(&mut slot).await?.1)
    }

    /// The shared part, at most `ttl` old.
    pub async fn global(&self) -> Result<Arc<GlobalStats>, StatsError> {
        Ok(self.global_with_time().await?.1)
    }

    /// The shared part, at most `ttl` old, and when the store was asked for it.
    async fn global_with_time(&self) -> Result<(Instant, Arc<GlobalStats>), StatsError> {
        // Holding the lock across the query makes concurrent viewers wait for one
        // query instead of each sending their own.
        let mut slot = self.global.lock().await;
        match slot.as_ref() {
            Some((at, g)) if at.elapsed() < self.ttl => Ok((*at, g.clone())),
            _ => self.fill(&mut slot).await,
        }
    }

    async fn fill(
        &self,
        slot: &mut Option<(Instant, Arc<GlobalStats>)>,
    ) -> Result<(Instant, Arc<GlobalStats>), StatsError> {
        count_query("global");
        let asked = Instant::now();
        let g = Arc::new(self.source.global().await?);
        *slot = Some((asked, g.clone()));
        Ok((asked, g))
    }

    /// Presses from `code` in the last hour, at most `ttl` old and asked no
    /// earlier than `not_before` (so that it is never older than the totals it
    /// is shown with).
    async fn last_hour(&self, code: &str, not_before: Instant) -> Result<u64, StatsError> {
        let mut map = self.last_hour.lock().await;
        if let Some((at, n)) = map.get(code)
            && at.elapsed() < self.ttl
            && *at >= not_before
        {
            return Ok(*n);
        }
        let since = last_hour_start(micros_since_epoch(SystemTime::now()));
        count_query("last_hour");
        let asked = Instant::now();
        let n = self.source.country_presses_since(code, since).await?;
        map.insert(code.to_owned(), (asked, n));
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
        // The session's count beside the totals and the last hour: a new
        // visitor waits for the longer of the two, not for their sum. The last
        // hour is asked after the totals it is shown with (see `last_hour`).
        let session = async {
            count_query("session");
            self.source.session_presses(session_id).await
        };
        let shared = async {
            let (asked, global) = self.global_with_time().await?;
            let last_hour = self.last_hour(&location.country_code, asked).await?;
            Ok::<_, StatsError>((global, last_hour))
        };
        let (session, (global, last_hour)) = tokio::try_join!(session, shared)?;
        let all_time = global
            .by_country
            .iter()
            .find(|c| c.country_code == location.country_code)
            .map_or(0, |c| c.presses)
            // The two figures come from different queries (the last hour's the
            // later one); never show more presses in the last hour than ever.
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

/// A minute in microseconds: the unit of the stores' per-minute counts.
pub const MINUTE_US: i64 = 60_000_000;

/// Where "the last hour" starts at `now_us`: the start of the minute an hour
/// ago, so the window is 60 to 61 minutes of whole minutes (what per-minute
/// counts can answer exactly).
pub fn last_hour_start(now_us: i64) -> i64 {
    (now_us - 60 * MINUTE_US).div_euclid(MINUTE_US) * MINUTE_US
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

    /// A stand-in store whose every figure is the number the test sets.
    struct Growing(std::sync::atomic::AtomicU64);

    #[async_trait]
    impl StatsSource for Growing {
        async fn global(&self) -> Result<GlobalStats, StatsError> {
            let n = self.0.load(Ordering::SeqCst);
            Ok(GlobalStats {
                total: n,
                by_country: vec![CountryPresses {
                    country_code: "FI".into(),
                    country_name: "Finland".into(),
                    presses: n,
                }],
            })
        }
        async fn session_presses(&self, _: Uuid) -> Result<u64, StatsError> {
            Ok(self.0.load(Ordering::SeqCst))
        }
        async fn country_presses_since(&self, _: &str, _: i64) -> Result<u64, StatsError> {
            Ok(self.0.load(Ordering::SeqCst))
        }
    }

    #[tokio::test]
    async fn the_last_hour_is_never_older_than_the_totals_it_is_shown_with() {
        let source = Arc::new(Growing(std::sync::atomic::AtomicU64::new(0)));
        let svc = StatsService::new(source.clone(), Duration::from_secs(60));
        let finland = Location {
            country_code: "FI".into(),
            country_name: "Finland".into(),
            ..Location::unknown()
        };
        let before = svc.for_viewer(Uuid::nil(), &finland, 1).await.unwrap();
        assert_eq!(before.your_country.last_hour, 0);
        source.0.store(3, Ordering::SeqCst);
        // Someone else (the live view) refreshes the totals; the last-hour figure
        // cached before them must not be shown beside them.
        svc.global_fresh().await.unwrap();
        let after = svc.for_viewer(Uuid::nil(), &finland, 1).await.unwrap();
        assert_eq!((after.total, after.your_country.last_hour), (3, 3));
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
    fn the_last_hour_starts_at_the_minute_an_hour_ago() {
        let minute = 60_000_000;
        let now = 28_333_333 * minute + 42 * 1_000_000; // 42 s into a minute
        let start = last_hour_start(now);
        assert_eq!(start % minute, 0);
        assert_eq!(now - start, 60 * minute + 42 * 1_000_000);
        assert_eq!(last_hour_start(start + 60 * minute), start);
    }

    #[test]
    fn share_is_a_percentage() {
        assert_eq!(share(1, 3), "33.3%");
        assert_eq!(share(0, 0), "0.0%");
    }
}
