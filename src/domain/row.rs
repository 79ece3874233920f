//! The event as a row: the one ordered list of columns that every store's table,
//! the wire encodings and the ClickHouse rows hold, and the event's values in that
//! order.
//!
//! Guarantee: [`COLUMNS`] and [`PressEvent::row`] describe the same fields in the
//! same order (the length is checked by the compiler, the types by the tests
//! below), and `src/store/tables.rs` tests that every table (SQLite, PostgreSQL,
//! ClickHouse, the ClickHouse Kafka-engine integration) and the Avro schema have
//! exactly these columns, naming the file and the column that is out of step.
//! Adding a field to [`PressEvent`] therefore means: one entry in [`COLUMNS`], its
//! value in [`PressEvent::row`] and [`PressEvent::from_row`], and one migration
//! per store.

use serde::ser::{Serialize, SerializeMap, Serializer};
use uuid::Uuid;

use super::{Action, Location, PressEvent};

/// What a column holds, whatever each store calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// A UUID (the text form on the wire).
    Uuid,
    /// A 64-bit integer.
    Int64,
    /// A 32-bit integer.
    Int32,
    /// UTF-8 text.
    Text,
    /// A 64-bit float.
    Float64,
}

/// Whether a field was in the original app's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// One of the original app's nine fields: name, type and place on the wire fixed.
    Original,
    /// Added by this app: optional (null by default) on the wire, so that readers
    /// and writers of the original schema stay compatible.
    Added,
}

/// One column of the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Its name, the same in every table and encoding.
    pub name: &'static str,
    /// What it holds.
    pub ty: ColumnType,
    /// Whether an event may have no value for it.
    pub nullable: bool,
    /// The original app's field, or one added since.
    pub origin: Origin,
}

impl Column {
    /// Whether the wire encodings (Avro, and tables that mirror the messages) may
    /// lack a value: nullable columns, and the added ones, which the original app's
    /// events do not have.
    pub fn optional_on_wire(&self) -> bool {
        self.nullable || self.origin == Origin::Added
    }
}

const fn column(name: &'static str, ty: ColumnType, nullable: bool, origin: Origin) -> Column {
    Column {
        name,
        ty,
        nullable,
        origin,
    }
}

/// How many columns an event has.
pub const COLUMN_COUNT: usize = 12;

/// The event's columns, in table order (the order of the PostgreSQL and ClickHouse
/// tables). On the wire (Avro) the original fields come first: see [`wire_order`].
pub const COLUMNS: [Column; COLUMN_COUNT] = {
    use ColumnType::*;
    use Origin::*;
    [
        column("event_id", Uuid, false, Added),
        column("session_id", Uuid, false, Original),
        column("timestamp", Int64, false, Original),
        column("action", Text, false, Original),
        column("country_name", Text, false, Original),
        column("country_code", Text, false, Original),
        column("subdivision_name", Text, false, Original),
        column("subdivision_code", Text, false, Original),
        column("city_name", Text, false, Original),
        column("cohort", Int32, true, Original),
        column("latitude", Float64, true, Added),
        column("longitude", Float64, true, Added),
    ]
};

/// The columns in wire order: the original app's fields first (its records stay
/// readable by position), then the added ones, each group in [`COLUMNS`] order.
/// Yields each column's index in [`COLUMNS`] too.
pub fn wire_order() -> impl Iterator<Item = (usize, &'static Column)> {
    let of = |origin| {
        COLUMNS
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.origin == origin)
    };
    of(Origin::Original).chain(of(Origin::Added))
}

/// One value of a row, borrowed from the event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// No value (nullable columns only).
    Null,
    /// A [`ColumnType::Uuid`] value.
    Uuid(Uuid),
    /// A [`ColumnType::Int64`] value.
    Int64(i64),
    /// A [`ColumnType::Int32`] value.
    Int32(i32),
    /// A [`ColumnType::Text`] value.
    Text(&'a str),
    /// A [`ColumnType::Float64`] value.
    Float64(f64),
}

impl Value<'_> {
    /// Whether this value may be stored in a column of type `ty` (null aside).
    pub fn fits(&self, ty: ColumnType) -> bool {
        matches!(
            (self, ty),
            (Value::Null, _)
                | (Value::Uuid(_), ColumnType::Uuid)
                | (Value::Int64(_), ColumnType::Int64)
                | (Value::Int32(_), ColumnType::Int32)
                | (Value::Text(_), ColumnType::Text)
                | (Value::Float64(_), ColumnType::Float64)
        )
    }
}

/// As JSON: null, the UUID's hyphenated text, a number or a string.
impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_none(),
            Value::Uuid(u) => u.serialize(s),
            Value::Int64(n) => s.serialize_i64(*n),
            Value::Int32(n) => s.serialize_i32(*n),
            Value::Text(t) => s.serialize_str(t),
            Value::Float64(x) => s.serialize_f64(*x),
        }
    }
}

/// An event's values, in [`COLUMNS`] order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row<'a>(
    /// The values: the `i`th is [`COLUMNS`]`[i]`'s.
    pub [Value<'a>; COLUMN_COUNT],
);

impl<'a> Row<'a> {
    /// Each column with its value, in [`COLUMNS`] order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static Column, Value<'a>)> + '_ {
        COLUMNS.iter().zip(self.0.iter().copied())
    }
}

/// As one JSON object keyed by column name, in [`COLUMNS`] order (ClickHouse's
/// `JSONEachRow` line).
impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(COLUMN_COUNT))?;
        for (column, value) in self.iter() {
            map.serialize_entry(column.name, &value)?;
        }
        map.end()
    }
}

/// Why values do not make an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column `{column}`: {reason}")]
pub struct RowError {
    /// Which column.
    pub column: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

impl PressEvent {
    /// The event's values, in [`COLUMNS`] order.
    pub fn row(&self) -> Row<'_> {
        let l = &self.location;
        let opt = |v: Option<Value<'static>>| v.unwrap_or(Value::Null);
        Row([
            Value::Uuid(self.event_id),
            Value::Uuid(self.session_id),
            Value::Int64(self.timestamp),
            Value::Text(self.action.as_str()),
            Value::Text(&l.country_name),
            Value::Text(&l.country_code),
            Value::Text(&l.subdivision_name),
            Value::Text(&l.subdivision_code),
            Value::Text(&l.city_name),
            opt(self.cohort.map(Value::Int32)),
            opt(l.latitude.map(Value::Float64)),
            opt(l.longitude.map(Value::Float64)),
        ])
    }

    /// The event `row` holds (the inverse of [`Self::row`]). A null in a column
    /// that is not nullable is "missing"; a value of the wrong type or an unknown
    /// action is invalid.
    pub fn from_row(row: &Row<'_>) -> Result<Self, RowError> {
        let event_id = row.uuid("event_id")?;
        let session_id = row.uuid("session_id")?;
        let timestamp = row.int64("timestamp")?;
        let action = row.text("action")?;
        let action = Action::parse(&action).ok_or_else(|| RowError {
            column: "action",
            reason: format!("unknown action {action:?}"),
        })?;
        Ok(PressEvent {
            event_id,
            session_id,
            timestamp,
            action,
            location: Location {
                country_name: row.text("country_name")?,
                country_code: row.text("country_code")?,
                subdivision_name: row.text("subdivision_name")?,
                subdivision_code: row.text("subdivision_code")?,
                city_name: row.text("city_name")?,
                latitude: row.float64("latitude")?,
                longitude: row.float64("longitude")?,
            },
            cohort: row.int32("cohort")?,
        })
    }
}

/// Typed access by column name, for [`PressEvent::from_row`]. The names are this
/// module's own (a wrong one fails the round-trip test), so a missing column is
/// a bug, reported as such.
impl Row<'_> {
    fn value(&self, name: &'static str) -> Result<(&'static Column, Value<'_>), RowError> {
        self.iter()
            .find(|(c, _)| c.name == name)
            .ok_or_else(|| RowError {
                column: name,
                reason: "no such column".to_owned(),
            })
    }

    fn uuid(&self, name: &'static str) -> Result<Uuid, RowError> {
        match self.value(name)? {
            (_, Value::Uuid(u)) => Ok(u),
            (c, other) => Err(unexpected(c, other)),
        }
    }

    fn int64(&self, name: &'static str) -> Result<i64, RowError> {
        match self.value(name)? {
            (_, Value::Int64(n)) => Ok(n),
            (c, other) => Err(unexpected(c, other)),
        }
    }

    fn text(&self, name: &'static str) -> Result<String, RowError> {
        match self.value(name)? {
            (_, Value::Text(t)) => Ok(t.to_owned()),
            (c, other) => Err(unexpected(c, other)),
        }
    }

    fn int32(&self, name: &'static str) -> Result<Option<i32>, RowError> {
        match self.value(name)? {
            (_, Value::Null) => Ok(None),
            (_, Value::Int32(n)) => Ok(Some(n)),
            (c, other) => Err(unexpected(c, other)),
        }
    }

    fn float64(&self, name: &'static str) -> Result<Option<f64>, RowError> {
        match self.value(name)? {
            (_, Value::Null) => Ok(None),
            (_, Value::Float64(x)) => Ok(Some(x)),
            (c, other) => Err(unexpected(c, other)),
        }
    }
}

fn unexpected(column: &Column, value: Value<'_>) -> RowError {
    RowError {
        column: column.name,
        reason: match value {
            Value::Null => "missing".to_owned(),
            other => format!("{other:?} is not a {:?}", column.ty),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn events() -> [PressEvent; 2] {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let full = Location {
            country_code: "GB".into(),
            country_name: "United Kingdom".into(),
            subdivision_name: "England".into(),
            subdivision_code: "ENG".into(),
            city_name: "London".into(),
            latitude: Some(51.5),
            longitude: Some(-0.1),
        };
        [
            PressEvent::new(Action::PressButton, Uuid::new_v4(), full, Some(3), at),
            PressEvent::new(
                Action::EnterPage,
                Uuid::new_v4(),
                Location::unknown(),
                None,
                at,
            ),
        ]
    }

    #[test]
    fn values_have_their_columns_types_and_nulls_only_where_allowed() {
        let [full, sparse] = events();
        for (column, value) in full.row().iter() {
            assert!(value.fits(column.ty), "{}: {value:?}", column.name);
            assert_ne!(
                value,
                Value::Null,
                "{}: the full event has a value",
                column.name
            );
        }
        for (column, value) in sparse.row().iter() {
            assert!(value.fits(column.ty), "{}: {value:?}", column.name);
            assert_eq!(value == Value::Null, column.nullable, "{}", column.name);
        }
    }

    #[test]
    fn rows_turn_back_into_the_same_events() {
        for e in events() {
            assert_eq!(PressEvent::from_row(&e.row()).unwrap(), e);
        }
    }

    #[test]
    fn bad_rows_name_the_column() {
        let [e, _] = events();
        let mut row = e.row();
        row.0[1] = Value::Null;
        let err = PressEvent::from_row(&row).unwrap_err();
        assert_eq!((err.column, err.reason.as_str()), ("session_id", "missing"));
        let mut row = e.row();
        row.0[3] = Value::Text("Jump");
        let err = PressEvent::from_row(&row).unwrap_err();
        assert_eq!(err.to_string(), "column `action`: unknown action \"Jump\"");
        let mut row = e.row();
        row.0[2] = Value::Text("soon");
        assert_eq!(PressEvent::from_row(&row).unwrap_err().column, "timestamp");
    }

    #[test]
    fn column_names_are_unique_and_the_wire_puts_the_original_fields_first() {
        let mut names: Vec<_> = COLUMNS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COLUMN_COUNT);
        let wire: Vec<_> = wire_order().map(|(_, c)| c.name).collect();
        assert_eq!(
            wire,
            [
                "session_id",
                "timestamp",
                "action",
                "country_name",
                "country_code",
                "subdivision_name",
                "subdivision_code",
                "city_name",
                "cohort",
                "event_id",
                "latitude",
                "longitude",
            ]
        );
        assert!(wire_order().all(|(i, c)| COLUMNS[i] == *c));
    }

    #[test]
    fn rows_serialize_as_one_object_in_column_order() {
        let [_, sparse] = events();
        let json = serde_json::to_string(&sparse.row()).unwrap();
        let keys: Vec<String> = serde_json::from_str::<serde_json::Value>(&json)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        // serde_json's map is sorted by key, so compare sets, then the text order.
        assert_eq!(keys.len(), COLUMN_COUNT);
        let positions: Vec<usize> = COLUMNS
            .iter()
            .map(|c| json.find(&format!("\"{}\":", c.name)).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{json}");
        assert!(json.contains("\"cohort\":null"), "{json}");
    }
}
