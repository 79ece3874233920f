//! Every place that lists the event's columns, read from its own file and checked
//! against the row type ([`COLUMNS`]): the SQLite, PostgreSQL and ClickHouse
//! migrations, the ClickHouse Kafka-engine integration (its SQL and the Aiven
//! integration's table definition), and the Avro schema.
//!
//! Guarantee: when a field is added to the event and a table or schema is not
//! changed with it (or a column differs in type or nullability), a test fails
//! naming the file and the column. Tables are compared by name, type and
//! nullability (rows are written by column name, so their order is free); the
//! Avro schema by order too, since a record's binary form is positional. Columns a
//! table computes itself (`DEFAULT`, `MATERIALIZED`, `ALIAS`) are not the event's.

use super::clickhouse::sql::statements;
use crate::domain::row::{COLUMNS, Column, ColumnType, wire_order};

/// How a dialect names the column types and marks nullable columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
    ClickHouse,
}

/// A column as a table declares it.
#[derive(Debug, Clone, PartialEq)]
struct Declared {
    name: String,
    /// The type without nullability (`Nullable(..)`, `LowCardinality(..)` removed).
    ty: String,
    nullable: bool,
    /// Filled by the database (`DEFAULT`, `MATERIALIZED`, `ALIAS`), not by writers.
    computed: bool,
}

/// `s` without `--` comment lines.
fn without_comments(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// `s` split at `sep` where no parenthesis is open.
fn split_top_level(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// Whitespace-separated words, keeping parenthesised groups (`Nullable(Int32)`,
/// `AggregateFunction(anyLast, String)`) whole.
fn words(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, None);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            c if c.is_whitespace() && depth == 0 => {
                if let Some(st) = start.take() {
                    out.push(&s[st..i]);
                }
                continue;
            }
            _ => {}
        }
        start.get_or_insert(i);
    }
    if let Some(st) = start {
        out.push(&s[st..]);
    }
    out
}

/// A table or column name without its database and quotes.
fn bare_name(s: &str) -> String {
    let s = s.rsplit('.').next().unwrap_or(s);
    s.trim_matches(|c| c == '"' || c == '`').to_owned()
}

/// The text inside the parenthesis opened at byte `open`.
fn parenthesised(s: &str, open: usize) -> &str {
    let mut depth = 0;
    for (i, c) in s[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &s[open + 1..open + i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses in {s}")
}

const CONSTRAINT_WORDS: &[&str] = &["PRIMARY", "CONSTRAINT", "UNIQUE", "CHECK", "FOREIGN"];
const TYPE_ENDS: &[&str] = &[
    "NOT",
    "NULL",
    "PRIMARY",
    "DEFAULT",
    "MATERIALIZED",
    "ALIAS",
    "EPHEMERAL",
    "CODEC",
    "COMMENT",
    "REFERENCES",
    "CHECK",
    "UNIQUE",
    "CONSTRAINT",
    "TTL",
    "COLLATE",
    "GENERATED",
];

/// One column definition (`name type [constraints]`), or `None` for a table
/// constraint. `pk_not_null`: whether `PRIMARY KEY` implies `NOT NULL` (not in
/// SQLite's rowid tables).
fn column_def(def: &str, dialect: Dialect, pk_not_null: bool) -> Option<Declared> {
    let words = words(def);
    let upper: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
    if CONSTRAINT_WORDS.contains(&upper[0].as_str()) {
        return None;
    }
    let type_len = upper[1..]
        .iter()
        .position(|w| TYPE_ENDS.contains(&w.as_str()))
        .unwrap_or(upper.len() - 1);
    let mut ty = words[1..=type_len].join(" ");
    let rest = upper[1 + type_len..].join(" ");
    let computed = ["DEFAULT", "MATERIALIZED", "ALIAS"]
        .iter()
        .any(|k| upper[1 + type_len..].iter().any(|w| w == k));
    let nullable = match dialect {
        Dialect::Sqlite | Dialect::Postgres => {
            !(rest.contains("NOT NULL") || (pk_not_null && rest.contains("PRIMARY KEY")))
        }
        Dialect::ClickHouse => {
            let mut nullable = false;
            loop {
                if let Some(inner) = ty.strip_prefix("LowCardinality(") {
                    ty = inner.strip_suffix(')').unwrap_or(inner).to_owned();
                } else if let Some(inner) = ty.strip_prefix("Nullable(") {
                    ty = inner.strip_suffix(')').unwrap_or(inner).to_owned();
                    nullable = true;
                } else {
                    break nullable;
                }
            }
        }
    };
    Some(Declared {
        name: bare_name(words[0]),
        ty,
        nullable,
        computed,
    })
}

/// The columns `table` has after every statement of `files` ran, in order:
/// `CREATE TABLE`, then `ALTER TABLE .. ADD COLUMN` / `DROP COLUMN`. Any other
/// change to the table's columns stops the test: teach it here first.
fn table_columns(dialect: Dialect, files: &[&str], table: &str) -> Vec<Declared> {
    let mut columns: Option<Vec<Declared>> = None;
    for statement in files.iter().flat_map(|f| statements(f)) {
        let statement = without_comments(statement);
        let words = words(&statement);
        let upper: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
        let keyword = |i: usize| upper.get(i).map(String::as_str);
        let name_at = if keyword(3) == Some("NOT") { 5 } else { 2 };
        let named = |i: usize| {
            words
                .get(i)
                .is_some_and(|w| bare_name(w.split('(').next().unwrap_or(w)) == table)
        };
        if (keyword(0), keyword(1)) == (Some("CREATE"), Some("TABLE")) && named(name_at) {
            let open = statement.find('(').expect("CREATE TABLE has a column list");
            let body = parenthesised(&statement, open);
            let after = statement[open + body.len() + 2..].to_uppercase();
            let pk_not_null = dialect != Dialect::Sqlite || after.contains("WITHOUT ROWID");
            columns = Some(
                split_top_level(body, ',')
                    .into_iter()
                    .filter_map(|def| column_def(def, dialect, pk_not_null))
                    .collect(),
            );
        } else if (keyword(0), keyword(1)) == (Some("ALTER"), Some("TABLE")) && named(2) {
            let columns = columns.as_mut().expect("ALTER TABLE after CREATE TABLE");
            for action in split_top_level(&words[3..].join(" "), ',') {
                let w: Vec<&str> = action.split_whitespace().collect();
                let up: Vec<String> = w.iter().map(|x| x.to_uppercase()).collect();
                let up: Vec<&str> = up.iter().map(String::as_str).collect();
                match up.as_slice() {
                    ["ADD", "COLUMN", "IF", "NOT", "EXISTS", ..] => {
                        columns.extend(column_def(&w[5..].join(" "), dialect, true));
                    }
                    ["ADD", "COLUMN", ..] => {
                        columns.extend(column_def(&w[2..].join(" "), dialect, true));
                    }
                    ["DROP", "COLUMN", "IF", "EXISTS", _, ..] => {
                        columns.retain(|c| c.name != bare_name(w[4]));
                    }
                    ["DROP", "COLUMN", _, ..] => columns.retain(|c| c.name != bare_name(w[2])),
                    _ => panic!("the column check does not understand `{action}` on {table}"),
                }
            }
        }
    }
    columns.unwrap_or_else(|| panic!("no CREATE TABLE {table}"))
}

/// What is out of step between `declared` (in `file`) and the event's columns,
/// each expected with the type `ty` gives and the nullability `nullable` gives.
fn differences(
    file: &str,
    declared: &[Declared],
    ty: impl Fn(ColumnType) -> &'static str,
    nullable: impl Fn(&Column) -> bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let stored: Vec<&Declared> = declared.iter().filter(|d| !d.computed).collect();
    for column in &COLUMNS {
        let want_ty = ty(column.ty);
        let want_null = nullable(column);
        let null_word = |n: bool| if n { "nullable" } else { "not nullable" };
        match stored.iter().find(|d| d.name == column.name) {
            None => out.push(format!(
                "{file}: no column `{}` (the event has it: {want_ty}, {})",
                column.name,
                null_word(want_null)
            )),
            Some(d) => {
                if !d.ty.eq_ignore_ascii_case(want_ty) {
                    out.push(format!(
                        "{file}: column `{}` is {}, the event's is {want_ty}",
                        column.name, d.ty
                    ));
                }
                if d.nullable != want_null {
                    out.push(format!(
                        "{file}: column `{}` is {}, the event's is {}",
                        column.name,
                        null_word(d.nullable),
                        null_word(want_null)
                    ));
                }
            }
        }
    }
    for d in &stored {
        if !COLUMNS.iter().any(|c| c.name == d.name) {
            out.push(format!(
                "{file}: column `{}` is not a field of the event (add it to \
                 domain::row::COLUMNS, or give it a DEFAULT)",
                d.name
            ));
        }
    }
    out
}

fn assert_in_step(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "out of step with domain::row::COLUMNS:\n  {}",
        problems.join("\n  ")
    );
}

fn clickhouse_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Uuid => "UUID",
        ColumnType::Int64 => "Int64",
        ColumnType::Int32 => "Int32",
        ColumnType::Text => "String",
        ColumnType::Float64 => "Float64",
    }
}

/// Tables that mirror the messages (the Kafka engine's) hold UUIDs as their text.
fn wire_clickhouse_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Uuid => "String",
        other => clickhouse_type(other),
    }
}

#[test]
fn sqlite_table_has_the_events_columns() {
    let declared = table_columns(
        Dialect::Sqlite,
        super::sqlite::migrations::MIGRATIONS,
        "events",
    );
    let ty = |ty| match ty {
        ColumnType::Uuid | ColumnType::Text => "TEXT",
        ColumnType::Int64 | ColumnType::Int32 => "INTEGER",
        ColumnType::Float64 => "REAL",
    };
    assert_in_step(differences(
        "src/store/sqlite/migrations",
        &declared,
        ty,
        |c| c.nullable,
    ));
}

#[test]
fn postgres_table_has_the_events_columns() {
    let declared = table_columns(
        Dialect::Postgres,
        super::postgres::migrations::MIGRATIONS,
        "button_presses",
    );
    assert_in_step(differences(
        "src/store/postgres/migrations",
        &declared,
        super::postgres::write::sql_type,
        |c| c.nullable,
    ));
}

#[test]
fn clickhouse_table_has_the_events_columns() {
    let declared = table_columns(
        Dialect::ClickHouse,
        super::clickhouse::migrations::MIGRATIONS,
        "button_presses",
    );
    assert!(
        declared
            .iter()
            .any(|d| d.name == "event_date" && d.computed),
        "the partition key is computed from the timestamp: {declared:?}"
    );
    assert_in_step(differences(
        "src/store/clickhouse/migrations",
        &declared,
        clickhouse_type,
        |c| c.nullable,
    ));
}

const KAFKA_ENGINE_SQL: &str = include_str!("../../integrations/clickhouse-kafka-engine.sql");
const AIVEN_INTEGRATION_JSON: &str =
    include_str!("../../integrations/aiven-clickhouse-integration.json");

#[test]
fn clickhouse_kafka_engine_integration_reads_and_copies_the_events_columns() {
    let file = "integrations/clickhouse-kafka-engine.sql";
    // The queue table mirrors the messages: optional where messages may lack a value.
    let queue = table_columns(
        Dialect::ClickHouse,
        &[KAFKA_ENGINE_SQL],
        "button_presses_queue",
    );
    let mut problems = differences(file, &queue, wire_clickhouse_type, Column::optional_on_wire);
    // The view copies every column into button_presses.
    let view = statements(KAFKA_ENGINE_SQL)
        .into_iter()
        .map(without_comments)
        .find(|s| s.to_uppercase().starts_with("CREATE MATERIALIZED VIEW"))
        .expect("a materialized view");
    let upper = view.to_uppercase();
    let select = upper.find("SELECT").expect("AS SELECT") + "SELECT".len();
    let from = select
        + upper[select..]
            .match_indices("FROM")
            .map(|(i, _)| i)
            .find(|&i| upper[select..][..i].ends_with(char::is_whitespace))
            .expect("SELECT .. FROM");
    let outputs: Vec<String> = split_top_level(&view[select..from], ',')
        .into_iter()
        .map(|item| bare_name(words(item).last().expect("an expression")))
        .collect();
    for column in &COLUMNS {
        if !outputs.iter().any(|o| o == column.name) {
            problems.push(format!("{file}: the view does not copy `{}`", column.name));
        }
    }
    for o in &outputs {
        if !COLUMNS.iter().any(|c| c.name == o) {
            problems.push(format!(
                "{file}: the view copies `{o}`, not a field of the event"
            ));
        }
    }
    assert_in_step(problems);
}

#[test]
fn aiven_integration_table_has_the_events_columns() {
    let json: serde_json::Value = serde_json::from_str(AIVEN_INTEGRATION_JSON).unwrap();
    let declared: Vec<Declared> = json["tables"][0]["columns"]
        .as_array()
        .expect("tables[0].columns")
        .iter()
        .map(|c| {
            let def = format!(
                "{} {}",
                c["name"].as_str().unwrap(),
                c["type"].as_str().unwrap()
            );
            column_def(&def, Dialect::ClickHouse, true).unwrap()
        })
        .collect();
    assert_in_step(differences(
        "integrations/aiven-clickhouse-integration.json",
        &declared,
        wire_clickhouse_type,
        Column::optional_on_wire,
    ));
}

#[test]
fn avro_schema_has_the_events_columns_in_wire_order() {
    let file = "schema/press_event.avsc";
    let schema: serde_json::Value =
        serde_json::from_str(crate::encoding::avro::SCHEMA_JSON).unwrap();
    let fields = schema["fields"].as_array().expect("a record's fields");
    let mut problems = Vec::new();
    let mut declared = Vec::new();
    for f in fields {
        let name = f["name"].as_str().expect("a field name").to_owned();
        let (ty, nullable) = match &f["type"] {
            serde_json::Value::String(t) => (t.clone(), false),
            serde_json::Value::Array(branches) => {
                let other: Vec<&str> = branches
                    .iter()
                    .filter_map(|b| b.as_str())
                    .filter(|b| *b != "null")
                    .collect();
                if branches.first().and_then(|b| b.as_str()) != Some("null")
                    || !f["default"].is_null()
                    || f.get("default").is_none()
                {
                    problems.push(format!(
                        "{file}: optional field `{name}` must be [\"null\", T] with default null"
                    ));
                }
                (other.join("|"), true)
            }
            other => panic!("{file}: field `{name}` has an unexpected type {other}"),
        };
        declared.push(Declared {
            name,
            ty,
            nullable,
            computed: false,
        });
    }
    let avro_type = |ty| match ty {
        ColumnType::Uuid | ColumnType::Text => "string",
        ColumnType::Int64 => "long",
        ColumnType::Int32 => "int",
        ColumnType::Float64 => "double",
    };
    problems.extend(differences(
        file,
        &declared,
        avro_type,
        Column::optional_on_wire,
    ));
    let order: Vec<&str> = declared.iter().map(|d| d.name.as_str()).collect();
    let want: Vec<&str> = wire_order().map(|(_, c)| c.name).collect();
    if problems.is_empty() && order != want {
        problems.push(format!(
            "{file}: fields in the order {order:?}, the wire order is {want:?} (the \
             original app's fields first, then the added ones)"
        ));
    }
    assert_in_step(problems);
}

#[test]
fn the_ddl_reader_follows_alter_table_and_reports_what_differs() {
    let files = [
        "CREATE TABLE IF NOT EXISTS {db}.t (a UUID, b Nullable(Int32), \
         d Date DEFAULT today()) ENGINE = MergeTree() ORDER BY a;",
        "ALTER TABLE {db}.t ADD COLUMN IF NOT EXISTS c LowCardinality(String), DROP COLUMN b",
    ];
    let declared = table_columns(Dialect::ClickHouse, &files, "t");
    let names: Vec<(&str, &str, bool, bool)> = declared
        .iter()
        .map(|d| (d.name.as_str(), d.ty.as_str(), d.nullable, d.computed))
        .collect();
    assert_eq!(
        names,
        [
            ("a", "UUID", false, false),
            ("d", "Date", false, true),
            ("c", "String", false, false)
        ]
    );
    let pg = table_columns(
        Dialect::Postgres,
        &["CREATE TABLE t (\"x\" double precision NULL, y text PRIMARY KEY, PRIMARY KEY (y))"],
        "t",
    );
    assert_eq!(
        pg,
        [
            Declared {
                name: "x".into(),
                ty: "double precision".into(),
                nullable: true,
                computed: false
            },
            Declared {
                name: "y".into(),
                ty: "text".into(),
                nullable: false,
                computed: false
            }
        ]
    );
    let sqlite = table_columns(
        Dialect::Sqlite,
        &["CREATE TABLE t (k TEXT PRIMARY KEY)"],
        "t",
    );
    assert!(sqlite[0].nullable, "rowid tables allow NULL keys");
    let problems = differences("f.sql", &declared, clickhouse_type, |c| c.nullable);
    assert!(
        problems.iter().any(|p| p
            == "f.sql: column `c` is not a field of the event \
             (add it to domain::row::COLUMNS, or give it a DEFAULT)"),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("f.sql: no column `session_id`")),
        "{problems:#?}"
    );
}
