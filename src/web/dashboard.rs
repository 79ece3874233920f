//! The dashboard's parts (map, table, ticker, click patterns, the viewer's own
//! figures), rendered the same way for the first page and for the live stream.
//!
//! Live updates go out as Server-Sent Events, named after the element they
//! replace (`sse-swap` in the page, htmx's SSE extension): `total`, `table`,
//! `ticker`, `patterns`, `legend`, and the viewer's own `session`,
//! `country-all-time`, `country-last-hour`, `rank`. The map's shades (`map`) and
//! the dots of new presses (`dots`) are JSON for `assets/dashboard.js`.
//!
//! Cost: the shared part of an update is rendered once, whoever asks first
//! ([`Update`]'s frames), then handed to every viewer as the same bytes; a
//! viewer adds only its own few lines, and only when its figures moved.
//! Countries below the minimum count are left out of everything public (see
//! [`crate::stats::public`]).

use std::collections::HashMap;
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use askama::Template;
use bytes::Bytes;
use uuid::Uuid;

use super::map::{Shading, WorldMap, legend_html};
use crate::live::{Tick, Update};
use crate::patterns::PatternReport;
use crate::stats::{CountryPresses, Stats, public, share};

/// One row of the per-country table.
pub struct CountryRow<'a> {
    pub country_code: &'a str,
    pub country_name: &'a str,
    pub presses: u64,
    pub share: String,
}

#[derive(Template)]
#[template(path = "partials/country_rows.html")]
struct RowsFragment<'a> {
    rows: Vec<CountryRow<'a>>,
}

/// The table's rows for `countries` (already public) out of `total`.
pub fn rows_html(countries: &[CountryPresses], total: u64) -> String {
    RowsFragment {
        rows: countries
            .iter()
            .map(|c| CountryRow {
                country_code: &c.country_code,
                country_name: &c.country_name,
                presses: c.presses,
                share: share(c.presses, total),
            })
            .collect(),
    }
    .render()
    .expect("the rows template renders")
}

struct TickLine {
    datetime: String,
    clock: String,
    place: String,
}

#[derive(Template)]
#[template(path = "partials/ticker.html")]
struct TickerFragment {
    ticks: Vec<TickLine>,
}

/// The ticker's lines: when and from which country, never who. A press from a
/// country kept out of public views reads "somewhere".
pub fn ticker_html(ticks: &[Tick], shown: &HashMap<&str, u64>) -> String {
    TickerFragment {
        ticks: ticks
            .iter()
            .map(|t| {
                let at = UNIX_EPOCH + Duration::from_micros(t.at_us.max(0) as u64);
                let datetime = humantime::format_rfc3339_seconds(at).to_string();
                TickLine {
                    clock: format!("{} UTC", &datetime[11..19]),
                    datetime,
                    place: if shown.contains_key(t.country_code.as_str()) {
                        t.country_name.clone()
                    } else {
                        "somewhere".into()
                    },
                }
            })
            .collect(),
    }
    .render()
    .expect("the ticker template renders")
}

struct Bar {
    x: usize,
    y: f64,
    height: f64,
    label: String,
}

struct Bucket<'a> {
    presses: &'a str,
    sessions: u64,
}

#[derive(Template)]
#[template(path = "partials/patterns.html")]
struct PatternsFragment<'a> {
    bars: Vec<Bar>,
    peak: u64,
    last_minute: u64,
    median_gap: String,
    repeat_share: String,
    sessions: u64,
    buckets: Vec<Bucket<'a>>,
}

/// The click patterns: a bar per minute of the last hour, the figures, and the
/// presses-per-session table.
pub fn patterns_html(report: &PatternReport) -> String {
    let peak = report.per_minute.iter().copied().max().unwrap_or(0);
    let n = report.per_minute.len();
    let bars = report
        .per_minute
        .iter()
        .enumerate()
        .map(|(i, &count)| {
            let height = if peak == 0 {
                0.0
            } else {
                (count as f64 * 98.0 / peak as f64 * 10.0).round() / 10.0
            };
            let ago = n - 1 - i;
            Bar {
                x: i * 10,
                y: 100.0 - height,
                height,
                label: match ago {
                    0 => format!("{count} this minute"),
                    1 => format!("{count} a minute ago"),
                    _ => format!("{count} {ago} minutes ago"),
                },
            }
        })
        .collect();
    PatternsFragment {
        bars,
        peak,
        last_minute: report.per_minute.last().copied().unwrap_or(0),
        median_gap: match report.median_gap_ms {
            None => "not yet".into(),
            Some(ms) if ms < 10_000.0 => format!("{:.1} s", ms / 1000.0),
            Some(ms) => format!("{:.0} s", ms / 1000.0),
        },
        repeat_share: format!("{:.0}%", report.repeat_share * 100.0),
        sessions: report.sessions,
        buckets: report
            .presses_per_session
            .iter()
            .map(|b| Bucket {
                presses: &b.presses,
                sessions: b.sessions,
            })
            .collect(),
    }
    .render()
    .expect("the patterns template renders")
}

/// "Finland is #7 at pressing nothing."
pub fn rank_line(country_name: &str, country_code: &str, rank: Option<usize>) -> String {
    let name = askama::filters::escape(country_name, askama::filters::Html)
        .map(|s| s.to_string())
        .unwrap_or_default();
    match rank {
        _ if country_code == crate::domain::Location::UNKNOWN_CODE => {
            "Wherever you are, nobody can tell: your presses count as “Unknown”.".into()
        }
        Some(1) => format!("{name} is #1 at pressing nothing. Nobody does nothing better."),
        Some(r) => format!("{name} is #{r} at pressing nothing."),
        None => format!("{name} has not pressed yet. Be the first."),
    }
}

/// Public counts by code, for shading and the ticker.
fn shown(countries: &[CountryPresses]) -> HashMap<&str, u64> {
    countries
        .iter()
        .map(|c| (c.country_code.as_str(), c.presses))
        .collect()
}

/// The map's shading for `countries` (already public).
pub fn shading(countries: &[CountryPresses]) -> Shading {
    Shading::new(
        countries
            .iter()
            .map(|c| (c.country_code.clone(), c.presses)),
    )
}

/// The statistics as the live view alone knows them (with Kafka and no store to
/// ask): counted since this server started; the session's own presses are not
/// known, and count from zero.
pub fn live_stats(update: &Update, location: &crate::domain::Location, min_count: u64) -> Stats {
    let all_time = update.rank(&location.country_code).map_or(0, |(_, n)| n);
    Stats {
        total: update.total,
        by_country: public(&update.countries, min_count),
        session: crate::stats::SessionStats { presses: 0 },
        your_country: crate::stats::YourCountry {
            country_code: location.country_code.clone(),
            country_name: location.country_name.clone(),
            all_time,
            last_hour: all_time,
        },
    }
}

/// Everything the first page shows besides the figures.
pub struct PageParts {
    pub map: String,
    pub legend: String,
    pub rows: String,
    pub ticker: String,
    pub patterns: String,
    pub rank: String,
}

impl PageParts {
    /// The parts for `stats` (already public) and the live view's latest `update`.
    pub fn new(stats: &Stats, update: &Update, min_count: u64) -> Self {
        let shading = shading(&stats.by_country);
        let live = public(&update.countries, min_count);
        let rank = stats.your_country_rank();
        PageParts {
            map: WorldMap::embedded().render(&shading),
            legend: legend_html(&shading),
            rows: rows_html(&stats.by_country, stats.total),
            ticker: ticker_html(&update.ticker, &shown(&live)),
            patterns: patterns_html(&update.latest_patterns),
            rank: rank_line(
                &stats.your_country.country_name,
                &stats.your_country.country_code,
                rank,
            ),
        }
    }
}

/// Appends one Server-Sent Event (every line of `data` gets its `data:` prefix).
fn push_event(out: &mut String, name: &str, data: &str) {
    let _ = writeln!(out, "event: {name}");
    for line in data.split('\n') {
        let _ = writeln!(out, "data: {line}");
    }
    out.push('\n');
}

/// The map's shades as JSON: `{"FI":[12,3]}` (count and level; 0 and 0 for a
/// country kept out of public views).
fn map_json<'a>(
    codes: impl Iterator<Item = &'a str>,
    shown: &HashMap<&str, u64>,
    shading: &Shading,
) -> String {
    let mut map = serde_json::Map::new();
    for code in codes {
        let count = shown.get(code).copied().unwrap_or(0);
        let level = if count == 0 { 0 } else { shading.level(code) };
        map.insert(code.to_owned(), serde_json::json!([count, level]));
    }
    serde_json::Value::Object(map).to_string()
}

/// The codes of every country drawn on the map with data.
fn map_codes() -> impl Iterator<Item = &'static str> {
    WorldMap::embedded()
        .countries()
        .iter()
        .map(|c| c.code.as_str())
        .filter(|c| !c.is_empty())
}

fn dots_json(update: &Update, shown: &HashMap<&str, u64>) -> Option<String> {
    let map = WorldMap::embedded();
    let dots: Vec<[f64; 2]> = update
        .dots
        .iter()
        .filter(|d| shown.contains_key(d.country_code.as_str()))
        .map(|d| {
            let (x, y) = map.project(d.latitude, d.longitude);
            [(x * 10.0).round() / 10.0, (y * 10.0).round() / 10.0]
        })
        .collect();
    (!dots.is_empty()).then(|| serde_json::to_string(&dots).expect("numbers serialize"))
}

/// The whole picture: what a new (or lagging) viewer gets first.
pub fn full_frame(update: &Update, min_count: u64) -> Bytes {
    update
        .full_frame
        .get_or_init(|| {
            let countries = public(&update.countries, min_count);
            let shown = shown(&countries);
            let shading = shading(&countries);
            let mut out = String::with_capacity(8192);
            push_event(&mut out, "total", &update.total.to_string());
            push_event(&mut out, "table", &rows_html(&countries, update.total));
            push_event(&mut out, "ticker", &ticker_html(&update.ticker, &shown));
            push_event(
                &mut out,
                "patterns",
                &patterns_html(&update.latest_patterns),
            );
            push_event(&mut out, "legend", &legend_html(&shading));
            push_event(&mut out, "map", &map_json(map_codes(), &shown, &shading));
            Bytes::from(out)
        })
        .clone()
}

/// What changed since the previous update, for viewers who had it.
pub fn delta_frame(update: &Update, min_count: u64) -> Bytes {
    update
        .delta_frame
        .get_or_init(|| {
            let countries = public(&update.countries, min_count);
            let shown = shown(&countries);
            let mut out = String::new();
            if !update.changed.is_empty() {
                push_event(&mut out, "total", &update.total.to_string());
            }
            if update.table_changed {
                push_event(&mut out, "table", &rows_html(&countries, update.total));
            }
            if update.ticker_changed {
                push_event(&mut out, "ticker", &ticker_html(&update.ticker, &shown));
            }
            if let Some(p) = &update.patterns {
                push_event(&mut out, "patterns", &patterns_html(p));
            }
            if !update.changed.is_empty() {
                let shading = shading(&countries);
                push_event(&mut out, "legend", &legend_html(&shading));
                let json = if update.max_changed {
                    // The scale moved: every shade may have.
                    map_json(map_codes(), &shown, &shading)
                } else {
                    map_json(
                        update.changed.iter().map(|(c, _)| c.as_str()),
                        &shown,
                        &shading,
                    )
                };
                push_event(&mut out, "map", &json);
            }
            if let Some(dots) = dots_json(update, &shown) {
                push_event(&mut out, "dots", &dots);
            }
            Bytes::from(out)
        })
        .clone()
}

/// How a viewer comes to an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The first, when the stream opens.
    First,
    /// After missing some: everything is sent again.
    Gap,
    /// The one after the previous.
    Next,
}

fn pressed_here(update: &Update, code: &str) -> bool {
    update.changed.iter().any(|(c, _)| c == code)
}

/// One viewer's own figures, followed from the figures its page was rendered
/// with: its session's presses (another tab of the same session counts too), its
/// country's presses and rank.
#[derive(Debug, Clone)]
pub struct Viewer {
    session_id: Uuid,
    /// Presses of the session from this instant on are not in its figures yet.
    counted_until_us: i64,
    country_code: String,
    country_name: String,
    session_presses: u64,
    country_all_time: u64,
    country_last_hour: u64,
    rank: Option<usize>,
}

impl Viewer {
    /// A viewer whose figures are `stats`, asked for at `asked_us`: presses
    /// made before then are in them.
    pub fn new(session_id: Uuid, stats: &Stats, asked_us: i64) -> Self {
        Viewer {
            session_id,
            counted_until_us: asked_us,
            country_code: stats.your_country.country_code.clone(),
            country_name: stats.your_country.country_name.clone(),
            session_presses: stats.session.presses,
            country_all_time: stats.your_country.all_time,
            country_last_hour: stats.your_country.last_hour,
            rank: None,
        }
    }

    /// This viewer's events for `update`.
    pub fn news(&mut self, update: &Update, seen: Seen) -> String {
        let mut out = String::new();
        // The figures the viewer started with hold the presses made before they
        // were asked for; updates may still carry some of those.
        let pressed = update.sessions.get(&self.session_id).map_or(0, |times| {
            times
                .iter()
                .filter(|t| **t >= self.counted_until_us)
                .count() as u64
        });
        let everything = seen != Seen::Next;
        self.session_presses += pressed;
        if everything || pressed > 0 {
            push_event(&mut out, "session", &self.session_presses.to_string());
        }
        let (rank, count) = match update.rank(&self.country_code) {
            Some((r, n)) => (Some(r), n),
            None => (None, 0),
        };
        if count != self.country_all_time {
            if count > self.country_all_time {
                // Presses are counted as they happen, so they are this hour's too.
                self.country_last_hour += count - self.country_all_time;
            }
            self.country_all_time = count;
            self.country_last_hour = self.country_last_hour.min(count);
        }
        if everything || pressed_here(update, &self.country_code) {
            push_event(
                &mut out,
                "country-all-time",
                &self.country_all_time.to_string(),
            );
            push_event(
                &mut out,
                "country-last-hour",
                &self.country_last_hour.to_string(),
            );
        }
        if everything || rank != self.rank {
            self.rank = rank;
            push_event(
                &mut out,
                "rank",
                &rank_line(&self.country_name, &self.country_code, rank),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Action, Location, PressEvent};
    use crate::live::Board;
    use crate::stats::{SessionStats, YourCountry};
    use std::time::SystemTime;

    fn press(code: &str, session: u128) -> PressEvent {
        PressEvent::new(
            Action::PressButton,
            Uuid::from_u128(session),
            Location {
                country_code: code.into(),
                country_name: format!("Land {code}"),
                latitude: Some(60.2),
                longitude: Some(24.9),
                ..Location::unknown()
            },
            Some(0),
            SystemTime::now(),
        )
    }

    fn events(frame: &str) -> Vec<(String, String)> {
        frame
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let mut name = String::new();
                let mut data = Vec::new();
                for line in e.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.into();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push(d);
                    }
                }
                (name, data.join("\n"))
            })
            .collect()
    }

    #[test]
    fn a_delta_carries_only_what_changed_and_the_full_frame_everything() {
        let mut b = Board::new(0);
        b.apply(&press("FI", 1));
        let first = b.flush(false);
        let delta = String::from_utf8(delta_frame(&first, 1).to_vec()).unwrap();
        let names: Vec<String> = events(&delta).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["total", "table", "ticker", "legend", "map", "dots"]);
        let map: serde_json::Value = serde_json::from_str(
            &events(&delta)
                .into_iter()
                .find(|(n, _)| n == "map")
                .unwrap()
                .1,
        )
        .unwrap();
        // The scale moved from nothing to one press: every country is resent.
        assert_eq!(map["FI"], serde_json::json!([1, 5]));
        assert_eq!(map["SE"], serde_json::json!([0, 0]));

        let quiet = b.flush(false);
        assert!(delta_frame(&quiet, 1).is_empty());
        let full = String::from_utf8(full_frame(&quiet, 1).to_vec()).unwrap();
        let names: Vec<String> = events(&full).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["total", "table", "ticker", "patterns", "legend", "map"]
        );
    }

    #[test]
    fn countries_below_the_minimum_count_stay_out_of_public_frames() {
        let mut b = Board::new(0);
        for _ in 0..3 {
            b.apply(&press("US", 1));
        }
        b.apply(&press("IS", 2));
        b.apply(&press("IS", 2));
        let u = b.flush(false);
        let frame = String::from_utf8(delta_frame(&u, 3).to_vec()).unwrap();
        let ev = events(&frame);
        let get = |n: &str| ev.iter().find(|(name, _)| name == n).unwrap().1.clone();
        assert!(get("table").contains("Land US") && !get("table").contains("Land IS"));
        assert!(!get("ticker").contains("Land IS") && get("ticker").contains("somewhere"));
        let map: serde_json::Value = serde_json::from_str(&get("map")).unwrap();
        assert_eq!(map["IS"], serde_json::json!([0, 0]));
        assert_eq!(map["US"], serde_json::json!([3, 5]));
        // Dots only for the country that is shown (three of five presses).
        let dots: Vec<[f64; 2]> = serde_json::from_str(&get("dots")).unwrap();
        assert_eq!(dots.len(), 3);
        assert_eq!(get("total"), "5");
    }

    #[test]
    fn a_viewer_hears_of_its_own_session_and_country_only() {
        let stats = Stats {
            total: 10,
            by_country: vec![],
            session: SessionStats { presses: 2 },
            your_country: YourCountry {
                country_code: "FI".into(),
                country_name: "Finland".into(),
                all_time: 4,
                last_hour: 1,
            },
        };
        let mut viewer = Viewer::new(Uuid::from_u128(1), &stats, 0);
        let mut b = Board::new(0);
        // The board was reconciled to the store: Finland had 4.
        b.reconcile(
            &crate::stats::GlobalStats {
                total: 4,
                by_country: vec![CountryPresses {
                    country_code: "FI".into(),
                    country_name: "Finland".into(),
                    presses: 4,
                }],
            },
            &b.mark(),
            crate::live::Reconcile::Exact,
        );
        let start = viewer.news(&b.flush(false), Seen::First);
        assert!(start.contains("event: session\ndata: 2\n"));
        assert!(start.contains("Finland is #1 at pressing nothing"));

        b.apply(&press("SE", 9));
        assert!(viewer.news(&b.flush(false), Seen::Next).is_empty());

        b.apply(&press("FI", 1)); // this session, another tab
        let news = viewer.news(&b.flush(false), Seen::Next);
        assert!(news.contains("event: session\ndata: 3\n"));
        assert!(news.contains("event: country-all-time\ndata: 5\n"));
        assert!(news.contains("event: country-last-hour\ndata: 2\n"));
    }

    #[test]
    fn a_press_already_in_the_viewers_figures_is_not_counted_twice() {
        let stats = Stats {
            total: 1,
            by_country: vec![],
            session: SessionStats { presses: 1 },
            your_country: YourCountry {
                country_code: "FI".into(),
                country_name: "Finland".into(),
                all_time: 1,
                last_hour: 1,
            },
        };
        let mut b = Board::new(0);
        b.apply(&press("FI", 1)); // in the figures, but flushed after they were asked
        let asked = crate::domain::event::micros_since_epoch(SystemTime::now());
        let mut viewer = Viewer::new(Uuid::from_u128(1), &stats, asked);
        let news = viewer.news(&b.flush(false), Seen::Next);
        assert!(!news.contains("event: session"), "{news}");
        std::thread::sleep(Duration::from_millis(2));
        b.apply(&press("FI", 1));
        let news = viewer.news(&b.flush(false), Seen::Next);
        assert!(news.contains("event: session\ndata: 2\n"), "{news}");
    }

    #[test]
    fn the_rank_line_reads_well() {
        assert_eq!(
            rank_line("Finland", "FI", Some(7)),
            "Finland is #7 at pressing nothing."
        );
        assert!(rank_line("Finland", "FI", None).contains("not pressed yet"));
        assert!(rank_line("Unknown", "--", Some(2)).contains("nobody can tell"));
        assert!(
            rank_line("<b>", "XX", Some(3)).starts_with("&#60;b&#62;")
                || rank_line("<b>", "XX", Some(3)).starts_with("&lt;b&gt;")
        );
    }

    #[test]
    fn events_with_several_lines_keep_every_line_as_data() {
        let mut out = String::new();
        push_event(&mut out, "x", "a\nb");
        assert_eq!(out, "event: x\ndata: a\ndata: b\n\n");
    }
}
