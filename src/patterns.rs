//! Click patterns: how people press a button that does nothing. Presses per
//! minute over the last hour, how many presses a session makes, the median time
//! between two presses of one session, and the share of sessions that came back
//! for more.
//!
//! Two ways in, one report: [`Patterns`] is fed press by press (the dashboard's
//! live consumer, which forgets sessions idle for over an hour and keeps the
//! latest [`GAPS_KEPT`] gaps), and [`Patterns::from_presses`] sorts a whole
//! history first (`button analyze`), so presses that arrive out of order (one
//! session's presses spread over partitions) still give exact gaps. Only
//! `PressButton` events are presses; callers filter.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use uuid::Uuid;

/// Minutes in the per-minute series.
pub const MINUTES: usize = 60;
/// Gaps the live tracker keeps for its median (the latest ones).
pub const GAPS_KEPT: usize = 100_000;
/// A session idle this long has ended (the session cookie lasts an hour).
const SESSION_IDLE_US: i64 = 3_600 * 1_000_000;
const MINUTE_US: i64 = 60 * 1_000_000;

/// The buckets of the presses-per-session histogram: (lowest, highest) presses.
pub const SESSION_BUCKETS: [(u64, u64); 8] = [
    (1, 1),
    (2, 2),
    (3, 3),
    (4, 5),
    (6, 10),
    (11, 20),
    (21, 50),
    (51, u64::MAX),
];

/// One bar of the presses-per-session histogram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionBucket {
    /// "1", "4-5", "51+".
    pub presses: String,
    /// Sessions whose press count falls in the bucket.
    pub sessions: u64,
}

/// What the dashboard, `/api/stats` and `button analyze` show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatternReport {
    /// Presses in each of the last [`MINUTES`] minutes, oldest first; the last
    /// entry is the minute in progress.
    pub per_minute: Vec<u64>,
    /// Presses counted.
    pub presses: u64,
    /// Sessions that pressed.
    pub sessions: u64,
    /// How many sessions made how many presses.
    pub presses_per_session: Vec<SessionBucket>,
    /// Median time between two consecutive presses of one session, in
    /// milliseconds; none before any session pressed twice.
    pub median_gap_ms: Option<f64>,
    /// Share of sessions that pressed more than once, 0 to 1.
    pub repeat_share: f64,
}

#[derive(Debug, Clone, Copy)]
struct Track {
    presses: u64,
    last_us: i64,
}

/// Click patterns, fed one press at a time.
#[derive(Debug, Default)]
pub struct Patterns {
    /// (minute since epoch, presses), oldest first, at most [`MINUTES`].
    minutes: VecDeque<(i64, u64)>,
    sessions: HashMap<Uuid, Track>,
    gaps_us: VecDeque<i64>,
    gaps_cap: usize,
    presses: u64,
}

impl Patterns {
    /// An empty tracker keeping the latest [`GAPS_KEPT`] gaps.
    pub fn new() -> Self {
        Patterns {
            gaps_cap: GAPS_KEPT,
            ..Default::default()
        }
    }

    /// The report over a whole history of presses (session, µs since epoch), in
    /// any order, as of `now_us`. Every gap counts.
    pub fn from_presses(
        presses: impl IntoIterator<Item = (Uuid, i64)>,
        now_us: i64,
    ) -> PatternReport {
        let mut all: Vec<(Uuid, i64)> = presses.into_iter().collect();
        all.sort_unstable();
        let mut p = Patterns {
            gaps_cap: usize::MAX,
            ..Default::default()
        };
        for (session, at) in all {
            p.observe(session, at);
        }
        p.report(now_us)
    }

    /// Counts one press of `session` at `at_us`.
    pub fn observe(&mut self, session: Uuid, at_us: i64) {
        self.presses += 1;
        self.count_minute(at_us);
        match self.sessions.get_mut(&session) {
            Some(track) => {
                track.presses += 1;
                if self.gaps_us.len() == self.gaps_cap {
                    self.gaps_us.pop_front();
                }
                self.gaps_us.push_back((at_us - track.last_us).abs());
                track.last_us = track.last_us.max(at_us);
            }
            None => {
                self.sessions.insert(
                    session,
                    Track {
                        presses: 1,
                        last_us: at_us,
                    },
                );
            }
        }
    }

    fn count_minute(&mut self, at_us: i64) {
        let minute = at_us.div_euclid(MINUTE_US);
        // Keep the series sorted; presses nearly always land in the last minute.
        match self.minutes.iter().rposition(|(m, _)| *m <= minute) {
            Some(i) if self.minutes[i].0 == minute => self.minutes[i].1 += 1,
            Some(i) => self.minutes.insert(i + 1, (minute, 1)),
            None => self.minutes.push_front((minute, 1)),
        }
        while self.minutes.len() > MINUTES * 2 {
            self.minutes.pop_front();
        }
    }

    /// Forgets sessions idle for over an hour before `now_us`: they have ended.
    pub fn expire(&mut self, now_us: i64) {
        self.sessions
            .retain(|_, t| now_us - t.last_us <= SESSION_IDLE_US);
        let first = now_us.div_euclid(MINUTE_US) - MINUTES as i64 + 1;
        while self.minutes.front().is_some_and(|(m, _)| *m < first) {
            self.minutes.pop_front();
        }
    }

    /// The report as of `now_us`.
    pub fn report(&self, now_us: i64) -> PatternReport {
        let last = now_us.div_euclid(MINUTE_US);
        let first = last - MINUTES as i64 + 1;
        let mut per_minute = vec![0; MINUTES];
        for (m, n) in &self.minutes {
            if (first..=last).contains(m) {
                per_minute[(m - first) as usize] += n;
            }
        }
        let mut buckets = vec![0u64; SESSION_BUCKETS.len()];
        let mut repeat = 0u64;
        for t in self.sessions.values() {
            if t.presses > 1 {
                repeat += 1;
            }
            if let Some(b) = SESSION_BUCKETS
                .iter()
                .position(|(lo, hi)| (*lo..=*hi).contains(&t.presses))
            {
                buckets[b] += 1;
            }
        }
        let sessions = self.sessions.len() as u64;
        PatternReport {
            per_minute,
            presses: self.presses,
            sessions,
            presses_per_session: SESSION_BUCKETS
                .iter()
                .zip(buckets)
                .map(|((lo, hi), sessions)| SessionBucket {
                    presses: bucket_label(*lo, *hi),
                    sessions,
                })
                .collect(),
            median_gap_ms: median(self.gaps_us.iter().copied().collect()).map(|us| us / 1000.0),
            repeat_share: if sessions == 0 {
                0.0
            } else {
                repeat as f64 / sessions as f64
            },
        }
    }
}

fn bucket_label(lo: u64, hi: u64) -> String {
    match (lo, hi) {
        (lo, u64::MAX) => format!("{lo}+"),
        (lo, hi) if lo == hi => lo.to_string(),
        (lo, hi) => format!("{lo}-{hi}"),
    }
}

/// The median of `values` (the mean of the two middle ones for an even count).
fn median(mut values: Vec<i64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mid = values.len() / 2;
    let (_, upper, _) = values.select_nth_unstable(mid);
    let upper = *upper as f64;
    if values.len() % 2 == 1 {
        return Some(upper);
    }
    let lower = *values[..mid]
        .iter()
        .max()
        .expect("mid > 0 for an even, non-empty list");
    Some((lower as f64 + upper) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const NOW: i64 = 1_800_000_000_000_000; // 2027-01-15, on a minute boundary

    /// A seeded stream like `generate` makes: sessions of 1..=30 presses,
    /// 0.5-5 s apart, starting anywhere in the last 50 minutes.
    fn stream(seed: u64) -> Vec<(Uuid, i64)> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = Vec::new();
        for _ in 0..400 {
            let session = Uuid::from_u128(rng.random());
            let mut at = NOW - rng.random_range(0..50 * MINUTE_US);
            for _ in 0..rng.random_range(1..=30) {
                out.push((session, at));
                at += rng.random_range(500_000..5_000_000);
            }
        }
        out.retain(|(_, at)| *at <= NOW);
        out
    }

    /// The expected figures, computed the plain way.
    struct Expected {
        per_minute: Vec<u64>,
        histogram: Vec<u64>,
        median_gap_ms: f64,
        repeat_share: f64,
    }

    fn expected(presses: &[(Uuid, i64)]) -> Expected {
        let first_minute = NOW / MINUTE_US - 59;
        let mut per_minute = vec![0; 60];
        let mut by_session: HashMap<Uuid, Vec<i64>> = HashMap::new();
        for (s, at) in presses {
            let m = at / MINUTE_US - first_minute;
            if (0..60).contains(&m) {
                per_minute[m as usize] += 1;
            }
            by_session.entry(*s).or_default().push(*at);
        }
        let mut histogram = vec![0; 8];
        let mut gaps = Vec::new();
        for times in by_session.values_mut() {
            times.sort();
            gaps.extend(times.windows(2).map(|w| w[1] - w[0]));
            let n = times.len();
            let b = match n {
                1 => 0,
                2 => 1,
                3 => 2,
                4..=5 => 3,
                6..=10 => 4,
                11..=20 => 5,
                21..=50 => 6,
                _ => 7,
            };
            histogram[b] += 1;
        }
        gaps.sort();
        let median_gap_ms = if gaps.len() % 2 == 1 {
            gaps[gaps.len() / 2] as f64
        } else {
            (gaps[gaps.len() / 2 - 1] + gaps[gaps.len() / 2]) as f64 / 2.0
        } / 1000.0;
        let repeat = by_session.values().filter(|t| t.len() > 1).count();
        Expected {
            per_minute,
            histogram,
            median_gap_ms,
            repeat_share: repeat as f64 / by_session.len() as f64,
        }
    }

    fn check(report: &PatternReport, want: &Expected, presses: usize) {
        assert_eq!(report.per_minute, want.per_minute);
        let histogram: Vec<u64> = report
            .presses_per_session
            .iter()
            .map(|b| b.sessions)
            .collect();
        assert_eq!(histogram, want.histogram);
        assert_eq!(report.median_gap_ms, Some(want.median_gap_ms));
        assert!((report.repeat_share - want.repeat_share).abs() < 1e-12);
        assert_eq!(report.presses, presses as u64);
    }

    #[test]
    fn a_whole_history_in_any_order_matches_the_plain_computation() {
        let mut presses = stream(7);
        let want = expected(&presses);
        // Shuffled, as three partitions would interleave them.
        presses.sort_by_key(|(s, at)| (at % 7, *s));
        check(
            &Patterns::from_presses(presses.clone(), NOW),
            &want,
            presses.len(),
        );
    }

    #[test]
    fn presses_fed_live_in_time_order_match_the_plain_computation() {
        let mut presses = stream(11);
        let want = expected(&presses);
        presses.sort_by_key(|(_, at)| *at);
        let mut live = Patterns::new();
        for (s, at) in &presses {
            live.observe(*s, *at);
        }
        live.expire(NOW);
        check(&live.report(NOW), &want, presses.len());
        assert_eq!(live.report(NOW).sessions, 400);
    }

    #[test]
    fn minutes_older_than_an_hour_and_idle_sessions_are_forgotten() {
        let mut p = Patterns::new();
        let s = Uuid::from_u128(1);
        p.observe(s, NOW - 2 * SESSION_IDLE_US);
        p.observe(Uuid::from_u128(2), NOW - MINUTE_US);
        p.expire(NOW);
        let r = p.report(NOW);
        assert_eq!(r.sessions, 1);
        assert_eq!(r.per_minute.iter().sum::<u64>(), 1);
        assert_eq!(r.per_minute[58], 1);
        assert_eq!(r.median_gap_ms, None);
    }

    #[test]
    fn the_live_median_keeps_only_the_latest_gaps() {
        let mut p = Patterns {
            gaps_cap: 3,
            ..Default::default()
        };
        let s = Uuid::from_u128(1);
        for at in [0, 100_000, 200_000, 1_200_000, 2_200_000, 3_200_000] {
            p.observe(s, at);
        }
        // Gaps 100, 100, 1000, 1000, 1000 ms; only the last three are kept.
        assert_eq!(p.report(3_200_000).median_gap_ms, Some(1000.0));
    }

    #[test]
    fn bucket_labels_read_as_ranges() {
        let labels: Vec<String> = SESSION_BUCKETS
            .iter()
            .map(|(lo, hi)| bucket_label(*lo, *hi))
            .collect();
        assert_eq!(
            labels,
            ["1", "2", "3", "4-5", "6-10", "11-20", "21-50", "51+"]
        );
    }

    #[test]
    fn an_empty_history_reports_zeroes() {
        let r = Patterns::from_presses(std::iter::empty(), NOW);
        assert_eq!(
            (r.presses, r.sessions, r.median_gap_ms, r.repeat_share),
            (0, 0, None, 0.0)
        );
        assert_eq!(r.per_minute.len(), MINUTES);
    }
}
