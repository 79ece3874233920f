//! SQL text for ClickHouse: quoting, the `{db}` placeholder, and splitting a `.sql`
//! file into the statements the HTTP interface takes one at a time.
//!
//! Guarantee: values and identifiers enter SQL text only through [`quote_str`] and
//! [`quote_ident`] (ClickHouse 18.16 has no query parameters), so no value can end
//! a literal early.

/// A ClickHouse string literal: `'...'` with backslashes and quotes escaped.
/// The only way values enter SQL text in this store.
pub(crate) fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A ClickHouse identifier: `` `...` `` with backslashes and backquotes escaped.
pub(crate) fn quote_ident(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('`');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '`' => out.push_str("\\`"),
            c => out.push(c),
        }
    }
    out.push('`');
    out
}

/// `template` with `{db}` replaced by `db` (a quoted identifier).
pub(super) fn in_database(template: &str, db: &str) -> String {
    template.replace("{db}", db)
}

/// The statements of a `.sql` file, trimmed, in order: split at each `;` outside
/// quotes, backquotes and comments. Empty statements are dropped.
pub(crate) fn statements(sql: &str) -> Vec<&str> {
    #[derive(Clone, Copy, PartialEq)]
    enum In {
        Code,
        Quoted(char),
        LineComment,
        BlockComment,
    }
    let mut out = Vec::new();
    let mut state = In::Code;
    let mut start = 0;
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|(_, n)| *n);
        state = match (state, c) {
            (In::Code, '\'' | '"' | '`') => In::Quoted(c),
            (In::Code, '-') if next == Some('-') => In::LineComment,
            (In::Code, '/') if next == Some('*') => {
                chars.next();
                In::BlockComment
            }
            (In::Code, ';') => {
                out.push(&sql[start..i]);
                start = i + 1;
                In::Code
            }
            (In::Quoted(_), '\\') => {
                chars.next(); // the escaped character, whatever it is
                state
            }
            (In::Quoted(q), c) if c == q => In::Code,
            (In::LineComment, '\n') => In::Code,
            (In::BlockComment, '*') if next == Some('/') => {
                chars.next();
                In::Code
            }
            (state, _) => state,
        };
    }
    out.push(&sql[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_identifiers_are_escaped() {
        assert_eq!(quote_str("NL"), "'NL'");
        assert_eq!(quote_str("Côte d'Ivoire"), "'Côte d\\'Ivoire'");
        assert_eq!(quote_str("a\\'b"), "'a\\\\\\'b'");
        assert_eq!(quote_str("x\\"), "'x\\\\'");
        assert_eq!(quote_str("' OR 1=1 --"), "'\\' OR 1=1 --'");
        assert_eq!(quote_ident("button"), "`button`");
        assert_eq!(quote_ident("we`ird\\"), "`we\\`ird\\\\`");
    }

    #[test]
    fn files_split_into_statements_at_semicolons_in_code_only() {
        let sql = "CREATE TABLE a (x String DEFAULT 'a;b');\n\n\
                   -- a comment; still a comment\n\
                   SELECT 'it\\'s;', `we;ird` /* c; d */ FROM t;\n;\n  ";
        assert_eq!(
            statements(sql),
            [
                "CREATE TABLE a (x String DEFAULT 'a;b')",
                "-- a comment; still a comment\nSELECT 'it\\'s;', `we;ird` /* c; d */ FROM t",
            ]
        );
        assert_eq!(statements("SELECT 1"), ["SELECT 1"]);
        assert!(statements(" ;\n").is_empty());
    }

    #[test]
    fn the_database_goes_where_the_placeholder_is() {
        assert_eq!(
            in_database("INSERT INTO {db}.t SELECT * FROM {db}.u", "`x`"),
            "INSERT INTO `x`.t SELECT * FROM `x`.u"
        );
    }
}
