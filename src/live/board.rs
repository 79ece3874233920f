//! The live board: what every dashboard shows, kept in memory from the stream of
//! committed presses, and turned into one [`Update`] per interval however many
//! presses came in. Pure: no clock, no I/O; the hub (`live/mod.rs`) feeds it.
//!
//! Counts start from the store and are then counted live. A periodic
//! [reconciliation](Board::reconcile) brings them back to what the store says
//! plus what came since the store was asked: exactly in the embedded mode (the
//! store has every committed press), and never downwards with Kafka (the store
//! is filled by a sink that may lag the topic this board reads).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use uuid::Uuid;

use crate::domain::{Action, PressEvent};
use crate::patterns::{PatternReport, Patterns};
use crate::stats::{CountryPresses, GlobalStats};

/// Presses the ticker shows.
pub const TICKER_LEN: usize = 12;
/// Dots one update carries at most (a burst shows as a burst, not as thousands).
const DOTS_PER_UPDATE: usize = 64;

/// One line of the ticker: where and when, never who.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// µs since the epoch.
    pub at_us: i64,
    /// ISO code or `--`.
    pub country_code: String,
    /// English name.
    pub country_name: String,
}

/// Where a press came from, to whole degrees (~100 km): a region, never a place.
#[derive(Debug, Clone, PartialEq)]
pub struct Dot {
    /// The press's country (dots of countries hidden from public views are not shown).
    pub country_code: String,
    /// Latitude, rounded.
    pub latitude: f64,
    /// Longitude, rounded.
    pub longitude: f64,
}

/// How reconciliation treats the store's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconcile {
    /// The store has every committed press (embedded): take its figures.
    Exact,
    /// The store lags the stream (a sink fills it): never count down.
    AtLeast,
}

/// One interval's news for every viewer, and the whole picture for new ones.
/// Rendered to bytes at most once per form (see the `OnceLock`s), whoever asks.
#[derive(Debug)]
pub struct Update {
    /// Increases by one per update.
    pub seq: u64,
    /// All presses.
    pub total: u64,
    /// Per country, biggest first (ties by code).
    pub countries: Arc<Vec<CountryPresses>>,
    /// Countries whose count changed in this interval, with the new count.
    pub changed: Vec<(String, u64)>,
    /// Whether the per-country order or figures changed (the table is resent).
    pub table_changed: bool,
    /// Whether the biggest country's count changed (every shade may change).
    pub max_changed: bool,
    /// Latest presses, newest first.
    pub ticker: Arc<Vec<Tick>>,
    /// Whether the ticker moved.
    pub ticker_changed: bool,
    /// This interval's presses that have coordinates, rounded to whole degrees.
    pub dots: Vec<Dot>,
    /// When each session pressed in this interval (µs since the epoch). Stays
    /// on the server: each viewer looks up its own session only.
    pub sessions: HashMap<Uuid, Vec<i64>>,
    /// Click patterns, when refreshed in this interval.
    pub patterns: Option<Arc<PatternReport>>,
    /// The latest patterns (for a new viewer's snapshot).
    pub latest_patterns: Arc<PatternReport>,
    /// Rendered as news for viewers who saw the previous update.
    pub delta_frame: OnceLock<Bytes>,
    /// Rendered as the whole picture, for new and lagging viewers.
    pub full_frame: OnceLock<Bytes>,
}

impl Update {
    /// 1-based rank of `code` and its presses, if it has any.
    pub fn rank(&self, code: &str) -> Option<(usize, u64)> {
        self.countries
            .iter()
            .position(|c| c.country_code == code)
            .map(|i| (i + 1, self.countries[i].presses))
    }
}

/// The board's state between updates.
#[derive(Debug)]
pub struct Board {
    counts: HashMap<String, (String, u64)>,
    /// Presses applied since the board began, per country: what reconciliation
    /// adds to the store's answer.
    applied: HashMap<String, u64>,
    ticker: VecDeque<Tick>,
    patterns: Patterns,
    latest_patterns: Arc<PatternReport>,
    // This interval's news.
    changed: HashMap<String, u64>,
    dots: Vec<Dot>,
    sessions: HashMap<Uuid, Vec<i64>>,
    table_changed: bool,
    max: u64,
    ticker_changed: bool,
    countries: Arc<Vec<CountryPresses>>,
    seq: u64,
}

/// What [`Board::mark`] remembers while the store is asked.
#[derive(Debug, Clone)]
pub struct Mark(HashMap<String, u64>);

impl Board {
    /// An empty board as of `now_us`.
    pub fn new(now_us: i64) -> Self {
        Board {
            counts: HashMap::new(),
            applied: HashMap::new(),
            ticker: VecDeque::with_capacity(TICKER_LEN),
            patterns: Patterns::new(),
            latest_patterns: Arc::new(Patterns::new().report(now_us)),
            changed: HashMap::new(),
            dots: Vec::new(),
            sessions: HashMap::new(),
            table_changed: true,
            max: 0,
            ticker_changed: true,
            countries: Arc::new(Vec::new()),
            seq: 0,
        }
    }

    /// Counts one committed event (page views are not presses and are ignored).
    pub fn apply(&mut self, event: &PressEvent) {
        if event.action != Action::PressButton {
            return;
        }
        let l = &event.location;
        let code = &l.country_code;
        // The country's key is copied only the first time it is seen: this runs
        // for every press.
        let count = match self.counts.get_mut(code) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.counts
                    .insert(code.clone(), (l.country_name.clone(), 1));
                1
            }
        };
        *entry(&mut self.changed, code) = count;
        *entry(&mut self.applied, code) += 1;
        self.sessions
            .entry(event.session_id)
            .or_default()
            .push(event.timestamp);
        self.patterns.observe(event.session_id, event.timestamp);
        if self.ticker.len() == TICKER_LEN {
            self.ticker.pop_back();
        }
        self.ticker.push_front(Tick {
            at_us: event.timestamp,
            country_code: l.country_code.clone(),
            country_name: l.country_name.clone(),
        });
        self.ticker_changed = true;
        if let (Some(lat), Some(lon)) = (l.latitude, l.longitude)
            && self.dots.len() < DOTS_PER_UPDATE
        {
            self.dots.push(Dot {
                country_code: l.country_code.clone(),
                latitude: lat.round(),
                longitude: lon.round(),
            });
        }
    }

    /// Remembers what has been applied so far; pass it to [`Board::reconcile`]
    /// with the store's answer to a query started after this call.
    pub fn mark(&self) -> Mark {
        Mark(self.applied.clone())
    }

    /// Brings the counts in line with `store` (asked after `mark`): exactly its
    /// figure plus the presses applied since; or, with a lagging store, at least
    /// its figure (never counting down).
    pub fn reconcile(&mut self, store: &GlobalStats, mark: &Mark, mode: Reconcile) {
        let mut target: HashMap<String, (String, u64)> = store
            .by_country
            .iter()
            .map(|c| (c.country_code.clone(), (c.country_name.clone(), c.presses)))
            .collect();
        // With a lagging store, only its own figures are certain: what came since
        // may or may not be in them already.
        let applied = if mode == Reconcile::Exact {
            &self.applied
        } else {
            &HashMap::new()
        };
        for (code, n) in applied {
            let since = n - mark.0.get(code).copied().unwrap_or(0);
            if since > 0 {
                let name = self.counts.get(code).map(|(name, _)| name.clone());
                let e = target
                    .entry(code.clone())
                    .or_insert_with(|| (name.unwrap_or_default(), 0));
                e.1 += since;
            }
        }
        if mode == Reconcile::AtLeast {
            for (code, (name, n)) in &self.counts {
                let e = target
                    .entry(code.clone())
                    .or_insert_with(|| (name.clone(), 0));
                e.1 = e.1.max(*n);
            }
        }
        for (code, (name, n)) in target {
            let old = self.counts.get(&code).map(|(_, n)| *n);
            if old != Some(n) {
                self.changed.insert(code.clone(), n);
            }
            self.counts.insert(code, (name, n));
        }
        if mode == Reconcile::Exact {
            // A country the store no longer has (its rows were deleted).
            let gone: Vec<String> = self
                .counts
                .iter()
                .filter(|(code, _)| {
                    !store.by_country.iter().any(|c| &c.country_code == *code)
                        && self.applied.get(*code) == mark.0.get(*code)
                })
                .map(|(code, _)| code.clone())
                .collect();
            for code in gone {
                self.counts.remove(&code);
                self.changed.insert(code, 0);
            }
        }
    }

    /// Recomputes the click patterns (as of `now_us`); whether they changed.
    pub fn refresh_patterns(&mut self, now_us: i64) -> bool {
        self.patterns.expire(now_us);
        let report = self.patterns.report(now_us);
        if report == *self.latest_patterns {
            return false;
        }
        self.latest_patterns = Arc::new(report);
        true
    }

    /// Whether anything happened since the last update.
    pub fn is_dirty(&self) -> bool {
        !self.changed.is_empty() || self.ticker_changed || self.table_changed
    }

    /// The interval's update; `patterns` says whether to send the patterns too.
    pub fn flush(&mut self, patterns: bool) -> Update {
        let table_changed = self.table_changed || !self.changed.is_empty();
        if table_changed {
            let mut countries: Vec<CountryPresses> = self
                .counts
                .iter()
                .filter(|(_, (_, n))| *n > 0)
                .map(|(code, (name, n))| CountryPresses {
                    country_code: code.clone(),
                    country_name: name.clone(),
                    presses: *n,
                })
                .collect();
            countries.sort_by(|a, b| {
                b.presses
                    .cmp(&a.presses)
                    .then_with(|| a.country_code.cmp(&b.country_code))
            });
            self.countries = Arc::new(countries);
        }
        self.seq += 1;
        let max = self.countries.first().map_or(0, |c| c.presses);
        let max_changed = std::mem::replace(&mut self.max, max) != max;
        let mut changed: Vec<(String, u64)> = self.changed.drain().collect();
        changed.sort();
        let update = Update {
            seq: self.seq,
            total: self.countries.iter().map(|c| c.presses).sum(),
            countries: self.countries.clone(),
            changed,
            table_changed,
            max_changed,
            ticker: Arc::new(self.ticker.iter().cloned().collect()),
            ticker_changed: self.ticker_changed,
            dots: std::mem::take(&mut self.dots),
            sessions: std::mem::take(&mut self.sessions),
            patterns: patterns.then(|| self.latest_patterns.clone()),
            latest_patterns: self.latest_patterns.clone(),
            delta_frame: OnceLock::new(),
            full_frame: OnceLock::new(),
        };
        self.table_changed = false;
        self.ticker_changed = false;
        update
    }
}

/// `map`'s value for `code`, made when missing: the key is copied only then
/// (this runs for every press, and the key is nearly always there).
fn entry<'a, V: Default>(map: &'a mut HashMap<String, V>, code: &str) -> &'a mut V {
    if !map.contains_key(code) {
        map.insert(code.to_owned(), V::default());
    }
    map.get_mut(code).expect("inserted above")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Location;
    use std::time::{Duration, UNIX_EPOCH};

    const NOW: i64 = 1_800_000_000_000_000;

    fn press(code: &str, session: u128, lat: Option<f64>) -> PressEvent {
        let location = Location {
            country_code: code.into(),
            country_name: format!("Land {code}"),
            latitude: lat,
            longitude: lat.map(|l| l * 2.0),
            ..Location::unknown()
        };
        PressEvent::new(
            Action::PressButton,
            Uuid::from_u128(session),
            location,
            Some(0),
            UNIX_EPOCH + Duration::from_micros(NOW as u64),
        )
    }

    fn store(rows: &[(&str, u64)]) -> GlobalStats {
        GlobalStats {
            total: rows.iter().map(|r| r.1).sum(),
            by_country: rows
                .iter()
                .map(|(c, n)| CountryPresses {
                    country_code: (*c).into(),
                    country_name: format!("Land {c}"),
                    presses: *n,
                })
                .collect(),
        }
    }

    #[test]
    fn many_presses_make_one_update_with_the_news() {
        let mut b = Board::new(NOW);
        for i in 0..100 {
            b.apply(&press(
                if i % 4 == 0 { "FI" } else { "SE" },
                i % 3,
                Some(60.17),
            ));
        }
        let mut view = press("FI", 9, None);
        view.action = Action::EnterPage;
        b.apply(&view);
        let u = b.flush(false);
        assert_eq!(u.total, 100);
        assert_eq!(u.rank("SE"), Some((1, 75)));
        assert_eq!(u.rank("FI"), Some((2, 25)));
        assert_eq!(u.changed, vec![("FI".into(), 25), ("SE".into(), 75)]);
        assert_eq!(u.sessions.values().map(Vec::len).sum::<usize>(), 100);
        assert_eq!(u.ticker.len(), TICKER_LEN);
        assert_eq!(u.dots.len(), DOTS_PER_UPDATE);
        assert_eq!((u.dots[0].latitude, u.dots[0].longitude), (60.0, 120.0));
        assert!(u.max_changed);
        assert!(!b.is_dirty());
        let quiet = b.flush(false);
        assert!(quiet.changed.is_empty() && quiet.sessions.is_empty() && !quiet.ticker_changed);
        assert!(!quiet.max_changed);
        assert_eq!(quiet.seq, u.seq + 1);
    }

    #[test]
    fn exact_reconciliation_takes_the_store_plus_what_came_after_asking() {
        let mut b = Board::new(NOW);
        b.apply(&press("FI", 1, None)); // before asking: the store has it
        let mark = b.mark();
        b.apply(&press("FI", 1, None)); // after asking: the store may not
        b.apply(&press("SE", 2, None));
        // The store knew 10 from Finland (including the first press) and a
        // country this board never saw.
        b.reconcile(&store(&[("FI", 10), ("NO", 4)]), &mark, Reconcile::Exact);
        let u = b.flush(false);
        assert_eq!(u.rank("FI"), Some((1, 11)));
        assert_eq!(u.rank("NO"), Some((2, 4)));
        assert_eq!(u.rank("SE"), Some((3, 1)));
        assert_eq!(u.total, 16);
    }

    #[test]
    fn exact_reconciliation_corrects_an_overcount() {
        let mut b = Board::new(NOW);
        b.apply(&press("FI", 1, None));
        b.apply(&press("FI", 1, None));
        let mark = b.mark();
        b.reconcile(&store(&[("FI", 1)]), &mark, Reconcile::Exact);
        assert_eq!(b.flush(false).rank("FI"), Some((1, 1)));
    }

    #[test]
    fn at_least_reconciliation_never_counts_down() {
        let mut b = Board::new(NOW);
        for _ in 0..5 {
            b.apply(&press("FI", 1, None));
        }
        let mark = b.mark();
        // The sink has written 3 of Finland's 5 so far, and 7 from Norway the
        // stream began before this board did.
        b.reconcile(&store(&[("FI", 3), ("NO", 7)]), &mark, Reconcile::AtLeast);
        let u = b.flush(false);
        assert_eq!(u.rank("FI"), Some((2, 5)));
        assert_eq!(u.rank("NO"), Some((1, 7)));

        // A press read after asking, which the sink had already written: the
        // store's 6 holds it, so it is not added on top.
        let mark = b.mark();
        b.apply(&press("FI", 1, None));
        b.reconcile(&store(&[("FI", 6), ("NO", 7)]), &mark, Reconcile::AtLeast);
        assert_eq!(b.flush(false).rank("FI"), Some((2, 6)));
    }

    #[test]
    fn the_ticker_keeps_the_newest_presses_first() {
        let mut b = Board::new(NOW);
        for code in ["AA", "BB", "CC"] {
            b.apply(&press(code, 1, None));
        }
        let u = b.flush(false);
        let codes: Vec<&str> = u.ticker.iter().map(|t| t.country_code.as_str()).collect();
        assert_eq!(codes, ["CC", "BB", "AA"]);
    }

    #[test]
    fn patterns_are_sent_only_when_refreshed() {
        let mut b = Board::new(NOW);
        b.apply(&press("FI", 1, None));
        b.apply(&press("FI", 1, None));
        assert!(b.flush(false).patterns.is_none());
        assert!(b.refresh_patterns(NOW));
        assert!(!b.refresh_patterns(NOW), "nothing new");
        let u = b.flush(true);
        let p = u.patterns.as_ref().unwrap();
        assert_eq!((p.presses, p.sessions), (2, 1));
        assert_eq!(u.latest_patterns.presses, 2);
    }
}
