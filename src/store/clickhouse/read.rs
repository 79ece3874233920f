//! The statistics queries.
//!
//! Guarantee: every figure counts distinct `event_id`s, so the duplicates a
//! retried insert leaves until the next merge never show. Per country, presses
//! are added up over minutes (migration 0002): a minute settled by `button sink`
//! since its last insert is one number; any other is counted from its ids. The
//! all-time figures are added up over days first (migration 0003): a day rolled
//! up since its last insert is one number; any other is added up over its
//! minutes. So the all-time read costs a row per country and day with presses
//! (and the minutes of the days inserted into since their roll-up), the last
//! hour at most 61 minutes per country, however many presses each holds; exact
//! either way. The per-session query uses the primary key.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Deserialize;
use uuid::Uuid;

use super::ChStore;
use super::error::ChError;
use super::sql::quote_str;
use crate::stats::{GlobalStats, MINUTE_US, StatsError, StatsSource};

/// A 64-bit integer: ClickHouse quotes 64-bit integers in JSON unless
/// `output_format_json_quote_64bit_integers=0`; accept both. (A setting would not
/// do: users in read-only mode may not change settings.) Read in one pass: an
/// untagged enum would try a number first and build an error message for every
/// quoted one, which took most of the time spent reading 2,000 rows
/// (BENCHMARKS.md).
#[derive(Debug, Clone, Copy)]
struct Int<T>(T);

impl<'de, T> Deserialize<'de> for Int<T>
where
    T: TryFrom<u64> + TryFrom<i64> + FromStr,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either<T>(PhantomData<T>);
        impl<T: TryFrom<u64> + TryFrom<i64> + FromStr> Visitor<'_> for Either<T> {
            type Value = Int<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer in range, quoted or not")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int<T>, E> {
                T::try_from(v)
                    .map(Int)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int<T>, E> {
                T::try_from(v)
                    .map(Int)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int<T>, E> {
                v.parse()
                    .map(Int)
                    .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(Either(PhantomData))
    }
}

type Count = Int<u64>;

#[derive(Deserialize)]
struct CountRow {
    n: Count,
}

/// Rows inserted into a country's minute so far.
#[derive(Deserialize)]
struct InsertedRow {
    country_code: String,
    minute: Int<i64>,
    n: Count,
}

/// A minute's presses as last settled, and the rows inserted it saw (`v`).
#[derive(Deserialize)]
struct SettledRow {
    country_code: String,
    minute: Int<i64>,
    p: Count,
    v: Count,
    name: String,
}

/// Rows inserted into a country's day so far.
#[derive(Deserialize)]
struct DayRow {
    country_code: String,
    day: Int<i64>,
    n: Count,
}

/// A day's presses as last rolled up, and the day's count it saw (`v`).
#[derive(Deserialize)]
struct DayTotalRow {
    country_code: String,
    day: Int<i64>,
    p: Count,
    v: Count,
    name: String,
}

/// A country's presses in some minutes, counted from their ids (an id is in
/// one minute only, so the minutes need not be apart).
#[derive(Deserialize)]
struct CountedRow {
    country_code: String,
    p: Count,
    name: String,
}

/// Presses per country code, with the country's name.
type ByCountry = BTreeMap<String, (String, u64)>;

/// Presses per country code and day, with the country's name.
pub(super) type ByDay = BTreeMap<(String, i64), (String, u64)>;

/// Minutes in a day.
const MINUTES_PER_DAY: i64 = 1440;

/// The day `minute` lies in, as the schema computes it (`intDiv`, toward zero,
/// like Rust's `/`).
pub(super) fn day_of(minute: i64) -> i64 {
    minute / MINUTES_PER_DAY
}

impl ChStore {
    /// The count in the one row `sql` returns (0 for no row).
    async fn count(&self, sql: &str) -> Result<u64, StatsError> {
        let rows: Vec<CountRow> = self.read_rows(sql).await.map_err(|e| self.stats_error(e))?;
        match rows.first() {
            Some(r) => Ok(r.n.0),
            None => Ok(0),
        }
    }

    fn stats_error(&self, e: ChError) -> StatsError {
        StatsError::read(format!("ClickHouse at {}", self.target), e)
    }

    /// For the countries' minutes or days that `filter` selects, at once: the
    /// rows inserted into each (`n`), and its latest settled or rolled-up total
    /// (`p`, versioned by the rows it saw: `v`). Aliases shadow no column (`n`,
    /// `p`, `v`, `name`): a name that is both is resolved differently across
    /// versions and settings (`prefer_column_name_to_alias`).
    async fn counts_and_totals<C, T>(
        &self,
        grain: Grain,
        filter: &str,
    ) -> Result<(Vec<C>, Vec<T>), ChError>
    where
        C: for<'de> Deserialize<'de>,
        T: for<'de> Deserialize<'de>,
    {
        let (key, table, inserted) = match grain {
            Grain::Minute => (
                "minute",
                "presses_by_country_minute",
                "countMerge(inserted)",
            ),
            Grain::Day => ("day", "presses_by_country_day", "sum(inserted)"),
        };
        let counts = self.sql(&format!(
            "SELECT country_code, {key}, {inserted} AS n \
             FROM {{db}}.{table} WHERE {filter} \
             GROUP BY country_code, {key} FORMAT JSONEachRow"
        ));
        let totals = self.sql(&format!(
            "SELECT country_code, {key}, argMax(presses, inserted) AS p, \
             max(inserted) AS v, argMax(country_name, inserted) AS name \
             FROM {{db}}.{table}_totals WHERE {filter} \
             GROUP BY country_code, {key} FORMAT JSONEachRow"
        ));
        tokio::try_join!(self.read_rows(&counts), self.read_rows(&totals))
    }

    /// The countries' minutes that `filter` (a condition on `country_code` and
    /// `minute`) selects: the presses of those settled since their last insert
    /// (per day), and which are not.
    pub(super) async fn minutes(&self, filter: &str) -> Result<Minutes, ChError> {
        // Read in either order: rows are only ever added, so a settling that saw
        // at least as many rows as this read saw inserted (`v >= n` below) saw
        // these rows or more, whichever ran first.
        let (inserted, settled): (Vec<InsertedRow>, Vec<SettledRow>) =
            self.counts_and_totals(Grain::Minute, filter).await?;
        let mut settled_at: HashMap<(String, i64), SettledRow> = HashMap::new();
        for row in settled {
            settled_at.insert((row.country_code.clone(), row.minute.0), row);
        }
        let mut minutes = Minutes::default();
        for row in inserted {
            let key = (row.country_code, row.minute.0);
            let n = row.n.0;
            *minutes
                .inserted
                .entry((key.0.clone(), day_of(key.1)))
                .or_default() += n;
            match settled_at.remove(&key) {
                // Settled after (or since) everything this read saw inserted.
                Some(s) if s.v.0 >= n => {
                    let day = (key.0, day_of(key.1));
                    add(&mut minutes.settled, day, s.name, s.p.0)
                }
                _ => minutes.unsettled.keys.push(key),
            }
        }
        Ok(minutes)
    }

    /// Presses per country in the minutes that `filter` selects: settled minutes
    /// as they were settled, the others counted from their ids.
    async fn presses_in(&self, filter: &str) -> Result<ByCountry, ChError> {
        let Minutes {
            settled, unsettled, ..
        } = self.minutes(filter).await?;
        let mut by_country = by_country(settled);
        // The chunks hold distinct minutes, and an id lies in one minute: their
        // counts add up.
        for filter in unsettled.filters() {
            let counted: Vec<CountedRow> = self
                .read_rows(&self.sql(&format!(
                    "SELECT country_code, uniqExactMerge(presses) AS p, \
                     anyLastMerge(country_name) AS name \
                     FROM {{db}}.presses_by_country_minute WHERE {filter} \
                     GROUP BY country_code FORMAT JSONEachRow"
                )))
                .await?;
            for row in counted {
                add(&mut by_country, row.country_code, row.name, row.p.0);
            }
        }
        Ok(by_country)
    }

    /// Presses per country, all time: days rolled up since their last insert
    /// as rolled up, the others added up over their minutes.
    async fn presses_all_time(&self) -> Result<ByCountry, ChError> {
        let Days { current, stale } = self.days("1").await?;
        let mut by_country = by_country(current);
        // Distinct days hold distinct minutes: their counts add up.
        for filter in stale.filters() {
            for (code, (name, presses)) in self.presses_in(&filter).await? {
                add(&mut by_country, code, name, presses);
            }
        }
        Ok(by_country)
    }

    /// The countries' days that `filter` (a condition on `country_code` and
    /// `day`) selects: the presses of those rolled up since their last insert
    /// (whose count still equals the rows the roll-up saw), and which are not.
    pub(super) async fn days(&self, filter: &str) -> Result<Days, ChError> {
        // Read in either order: a roll-up the totals' read misses only leaves
        // its day stale (added up from its minutes), and an insert after the
        // roll-up it sees makes the count differ from its version.
        let (counted, totals): (Vec<DayRow>, Vec<DayTotalRow>) =
            self.counts_and_totals(Grain::Day, filter).await?;
        let mut rolled_up: HashMap<(String, i64), DayTotalRow> = HashMap::new();
        for row in totals {
            rolled_up.insert((row.country_code.clone(), row.day.0), row);
        }
        let mut days = Days::default();
        for row in counted {
            let key = (row.country_code, row.day.0);
            match rolled_up.remove(&key) {
                // Nothing inserted since the roll-up. Equal, not at least: a
                // count that fell behind its minutes (a view that failed
                // where the other did not) must not hide later inserts.
                Some(t) if t.v.0 == row.n.0 => {
                    add(&mut days.current, key, t.name, t.p.0)
                }
                _ => days.stale.push(key),
            }
        }
        Ok(days)
    }
}

/// Adds `presses` to `key`'s count.
fn add<K: Ord>(counts: &mut BTreeMap<K, (String, u64)>, key: K, name: String, presses: u64) {
    counts.entry(key).or_insert((name, 0)).1 += presses;
}

/// `by_day`, added up per country.
fn by_country(by_day: ByDay) -> ByCountry {
    let mut out = ByCountry::new();
    for ((code, _), (name, presses)) in by_day {
        add(&mut out, code, name, presses);
    }
    out
}

/// What [`ChStore::minutes`] found.
#[derive(Default)]
pub(super) struct Minutes {
    /// Presses of the settled minutes, per country and day.
    pub(super) settled: ByDay,
    /// The others.
    pub(super) unsettled: Pairs,
    /// Rows inserted into the minutes, per country and day (read before the
    /// settled presses, so those hold at least these rows' ids).
    pub(super) inserted: BTreeMap<(String, i64), u64>,
}

/// What [`ChStore::days`] found.
pub(super) struct Days {
    /// Presses of the days rolled up since their last insert.
    pub(super) current: ByDay,
    /// The others.
    pub(super) stale: Pairs,
}

impl Default for Days {
    fn default() -> Self {
        Days {
            current: ByDay::new(),
            stale: Pairs::new(Grain::Day),
        }
    }
}

/// What the second part of a (country, time) pair counts.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) enum Grain {
    #[default]
    Minute,
    Day,
}

impl Grain {
    /// The expression for this grain over a `minute` column.
    fn of_minute(self) -> &'static str {
        match self {
            Grain::Minute => "minute",
            Grain::Day => "intDiv(minute, 1440)",
        }
    }

    /// The first and the last minute of `first` and `last` (a day holds the
    /// minutes [`day_of`] maps to it: day 0 reaches below zero too).
    fn minutes(self, first: i64, last: i64) -> (i64, i64) {
        match self {
            Grain::Minute => (first, last),
            Grain::Day => {
                let d = MINUTES_PER_DAY;
                let lo = if first > 0 {
                    first * d
                } else {
                    first * d - (d - 1)
                };
                let hi = if last < 0 {
                    last * d
                } else {
                    last * d + (d - 1)
                };
                (lo, hi)
            }
        }
    }
}

/// Countries' minutes or days: those inserted into since they were last
/// settled or rolled up.
#[derive(Default)]
pub(super) struct Pairs {
    grain: Grain,
    keys: Vec<(String, i64)>,
}

impl Pairs {
    pub(super) fn new(grain: Grain) -> Self {
        Pairs {
            grain,
            keys: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, key: (String, i64)) {
        self.keys.push(key);
    }

    pub(super) fn keys(&self) -> &[(String, i64)] {
        &self.keys
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Conditions on `country_code` and `minute` selecting exactly these
    /// minutes (or the minutes of these days), each naming at most
    /// [`PAIRS_PER_QUERY`] pairs, together all of them and each once: the
    /// range of the primary key a part spans (so only their parts are read),
    /// then the pairs. One condition for every pair would not do: a day of
    /// presses from a hundred countries is 144,000 minutes, and ClickHouse
    /// refuses a query over `max_query_size` (256 KiB by default).
    pub(super) fn filters(&self) -> Vec<String> {
        let mut keys: Vec<&(String, i64)> = self.keys.iter().collect();
        keys.sort();
        keys.chunks(PAIRS_PER_QUERY)
            .map(|chunk| filter(self.grain, chunk))
            .collect()
    }
}

/// The most (country, minute or day) pairs one statement names: about 20 bytes
/// each, so a statement stays well under ClickHouse's default `max_query_size`.
pub(super) const PAIRS_PER_QUERY: usize = 4_000;

/// A condition selecting exactly `keys` (sorted, not empty) of `grain`.
fn filter(grain: Grain, keys: &[&(String, i64)]) -> String {
    let countries: BTreeSet<&str> = keys.iter().map(|(c, _)| c.as_str()).collect();
    let first = keys.iter().map(|k| k.1).min().unwrap_or(0);
    let last = keys.iter().map(|k| k.1).max().unwrap_or(0);
    let (first, last) = grain.minutes(first, last);
    let countries: Vec<String> = countries.into_iter().map(quote_str).collect();
    let pairs: Vec<String> = keys
        .iter()
        .map(|(c, m)| format!("({}, {m})", quote_str(c)))
        .collect();
    format!(
        "country_code IN ({}) AND minute >= {first} AND minute <= {last} \
         AND (country_code, {}) IN ({})",
        countries.join(", "),
        grain.of_minute(),
        pairs.join(", ")
    )
}

#[async_trait]
impl StatsSource for ChStore {
    async fn global(&self) -> Result<GlobalStats, StatsError> {
        let by_country = self
            .presses_all_time()
            .await
            .map_err(|e| self.stats_error(e))?;
        Ok(GlobalStats::of(
            by_country
                .into_iter()
                .map(|(code, (name, presses))| (code, name, presses)),
        ))
    }

    async fn session_presses(&self, id: Uuid) -> Result<u64, StatsError> {
        // A Uuid's Display is its canonical hyphenated form: safe in a literal.
        // PREWHERE on the key: each part's matching rows are found from the
        // session ids alone before any other column is read. Left to itself,
        // ClickHouse 18.16 moves the `action` test there instead, and the query
        // took 25-40% longer on a table of 10 million events in 10 parts
        // (BENCHMARKS.md).
        self.count(&self.sql(&format!(
            "SELECT uniqExact(event_id) AS n FROM {{db}}.button_presses \
             PREWHERE session_id = toUUID('{}') WHERE action = 'PressButton' \
             FORMAT JSONEachRow",
            id.hyphenated()
        )))
        .await
    }

    async fn country_presses_since(
        &self,
        country_code: &str,
        since_us: i64,
    ) -> Result<u64, StatsError> {
        let filter = format!(
            "country_code = {} AND minute >= {}",
            quote_str(country_code),
            since_us.div_euclid(MINUTE_US)
        );
        let by_country = self
            .presses_in(&filter)
            .await
            .map_err(|e| self.stats_error(e))?;
        Ok(by_country.values().map(|(_, presses)| presses).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::clickhouse::http::parse_rows;

    #[test]
    fn counts_come_quoted_or_not() {
        let rows: Vec<CountRow> = parse_rows("{\"n\":\"12\"}\n").unwrap();
        assert_eq!(rows[0].n.0, 12);
        let rows: Vec<CountRow> = parse_rows("{\"n\":12}\n\n").unwrap();
        assert_eq!(rows[0].n.0, 12);
        let rows: Vec<CountRow> = parse_rows("{\"n\":\"18446744073709551615\"}").unwrap();
        assert_eq!(rows[0].n.0, u64::MAX);
        for bad in ["{\"n\":\"x\"}", "{\"n\":-1}", "{\"n\":\"-1\"}", "{\"n\":1.5}", "oops"] {
            let err = parse_rows::<CountRow>(bad).err();
            assert!(matches!(err, Some(ChError::Unreadable { .. })), "{bad}: {err:?}");
        }
        let rows: Vec<InsertedRow> =
            parse_rows("{\"country_code\":\"NL\",\"minute\":\"-3\",\"n\":2}").unwrap();
        assert_eq!((rows[0].minute.0, rows[0].n.0), (-3, 2));
        let rows: Vec<InsertedRow> =
            parse_rows("{\"country_code\":\"NL\",\"minute\":-3,\"n\":\"2\"}").unwrap();
        assert_eq!((rows[0].minute.0, rows[0].n.0), (-3, 2));
    }

    #[test]
    fn unsettled_minutes_are_picked_exactly_within_their_key_range() {
        let unsettled = Pairs {
            grain: Grain::Minute,
            keys: vec![("NL".into(), 3), ("O'K".into(), 1), ("NL".into(), 1)],
        };
        assert_eq!(
            unsettled.filters(),
            [
                "country_code IN ('NL', 'O\\'K') AND minute >= 1 AND minute <= 3 \
              AND (country_code, minute) IN (('NL', 1), ('NL', 3), ('O\\'K', 1))"
            ]
        );
    }

    #[test]
    fn many_unsettled_minutes_are_picked_in_chunks_each_once() {
        let keys: Vec<(String, i64)> = (0..2 * PAIRS_PER_QUERY as i64 + 1)
            .rev()
            .map(|m| (if m % 2 == 0 { "NL" } else { "GB" }.into(), m))
            .collect();
        let filters = Pairs {
            grain: Grain::Minute,
            keys: keys.clone(),
        }
        .filters();
        assert_eq!(filters.len(), 3);
        let mut named = 0;
        for f in &filters {
            assert!(f.len() < 128 << 10, "a filter of {} bytes", f.len());
            named += f.matches("), (").count() + 1;
        }
        assert_eq!(named, keys.len());
        // Sorted: the first chunk is Great Britain's, with its key range only.
        assert!(filters[0].starts_with("country_code IN ('GB') AND minute >= 1 AND"));
    }

    #[test]
    fn days_are_picked_by_the_minutes_they_hold() {
        let days = Pairs {
            grain: Grain::Day,
            keys: vec![("NL".into(), 2), ("NL".into(), 1)],
        };
        assert_eq!(
            days.filters(),
            [
                "country_code IN ('NL') AND minute >= 1440 AND minute <= 4319 \
              AND (country_code, intDiv(minute, 1440)) IN (('NL', 1), ('NL', 2))"
            ]
        );
        // intDiv rounds toward zero: day 0 holds a minute either side of zero,
        // day -1 the 1,440 minutes below that.
        assert_eq!(Grain::Day.minutes(0, 0), (-1439, 1439));
        assert_eq!(Grain::Day.minutes(-1, -1), (-2879, -1440));
        for minute in [-2880, -2879, -1440, -1439, -1, 0, 1439, 1440, 4319, 4320] {
            let (lo, hi) = Grain::Day.minutes(day_of(minute), day_of(minute));
            assert!(
                lo <= minute && minute <= hi,
                "minute {minute} in {lo}..={hi}"
            );
        }
        assert_eq!((day_of(-1440), day_of(-1439), day_of(1439)), (-1, 0, 0));
    }
}
