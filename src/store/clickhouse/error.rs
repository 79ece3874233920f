//! Why a ClickHouse request failed, and whether retrying can help: classified like
//! Vector's ClickHouse `RetryLogic`, by ClickHouse error code when the answer has
//! one, else by HTTP status.
//!
//! Guarantee: [`ChError`]'s message says what failed at this level and its
//! [`source`](std::error::Error::source) gives the cause (for a failed request,
//! reqwest's chain down to the I/O error), so the chain is rendered once, where it
//! is reported. Requests are sent without their URL in errors, and credentials
//! travel in headers, so no message holds a password.

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub(super) enum ChError {
    /// No answer: connection refused or lost, timeout, TLS.
    #[error(transparent)]
    Transport(reqwest::Error),
    /// The server answered with an error.
    #[error("HTTP {status}: {message}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// ClickHouse's error code, when the answer has one.
        code: Option<u32>,
        /// The answer's text (shortened).
        message: String,
    },
    /// An answer line that is not the JSON the query returns.
    #[error("unexpected answer {line:?}")]
    Unreadable {
        /// The line (shortened).
        line: String,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
}

/// ClickHouse error codes that retrying the same request cannot fix: bad data,
/// type mismatches, unknown tables or columns, syntax, permissions, credentials.
const PERMANENT_CODES: &[u32] = &[
    1,   // UNSUPPORTED_METHOD
    2,   // UNSUPPORTED_PARAMETER
    6,   // CANNOT_PARSE_TEXT
    8,   // THERE_IS_NO_COLUMN
    10,  // NOT_FOUND_COLUMN_IN_BLOCK
    16,  // NO_SUCH_COLUMN_IN_TABLE
    20,  // NUMBER_OF_COLUMNS_DOESNT_MATCH
    25,  // CANNOT_PARSE_ESCAPE_SEQUENCE
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    36,  // BAD_ARGUMENTS
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    43,  // ILLEGAL_TYPE_OF_ARGUMENT
    44,  // ILLEGAL_COLUMN
    46,  // UNKNOWN_FUNCTION
    47,  // UNKNOWN_IDENTIFIER
    48,  // NOT_IMPLEMENTED
    53,  // TYPE_MISMATCH
    60,  // UNKNOWN_TABLE
    62,  // SYNTAX_ERROR
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    73,  // UNKNOWN_FORMAT
    81,  // UNKNOWN_DATABASE
    115, // UNKNOWN_SETTING
    117, // INCORRECT_DATA
    130, // CANNOT_READ_ARRAY_FROM_TEXT
    131, // TOO_LARGE_STRING_SIZE
    164, // READONLY
    192, // UNKNOWN_USER
    193, // WRONG_PASSWORD
    194, // REQUIRED_PASSWORD
    195, // IP_ADDRESS_NOT_ALLOWED
    376, // CANNOT_PARSE_UUID
    497, // ACCESS_DENIED
    516, // AUTHENTICATION_FAILED
];

/// Whether a server error may go away by itself: by ClickHouse code when there
/// is one (too many parts, memory, timeouts, read-only replicas, ... can), else by
/// HTTP status (5xx, 408 and 429 can; other 4xx cannot).
fn server_error_retryable(status: u16, code: Option<u32>) -> bool {
    match code {
        Some(code) => !PERMANENT_CODES.contains(&code),
        None => status >= 500 || status == 408 || status == 429,
    }
}

impl ChError {
    /// Whether the same request may succeed if sent again.
    pub(super) fn retryable(&self) -> bool {
        match self {
            ChError::Transport(e) => !e.is_builder(),
            ChError::Server { status, code, .. } => server_error_retryable(*status, *code),
            ChError::Unreadable { .. } => true,
        }
    }
}

/// The ClickHouse code in an error body: `Code: 60, e.displayText() = ...` (18.x)
/// or `Code: 60. DB::Exception: ...` (current versions).
pub(super) fn error_code(body: &str) -> Option<u32> {
    let rest = &body[body.find("Code: ")? + 6..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_from_old_and_new_bodies() {
        assert_eq!(
            error_code("Code: 60, e.displayText() = DB::Exception: Table t1.nope doesn't exist."),
            Some(60)
        );
        assert_eq!(
            error_code("Code: 241. DB::Exception: Memory limit exceeded"),
            Some(241)
        );
        assert_eq!(error_code("Bad Gateway"), None);
    }

    #[test]
    fn errors_are_classified() {
        // Bad data, schema, syntax, credentials: retrying cannot help.
        for code in [26, 27, 38, 53, 60, 62, 117, 130, 376, 193, 516, 81] {
            assert!(!server_error_retryable(500, Some(code)), "code {code}");
        }
        // Overload, memory, timeouts, read-only replicas, network: retry.
        for code in [252, 202, 241, 159, 209, 210, 242, 319, 999] {
            assert!(server_error_retryable(500, Some(code)), "code {code}");
        }
        // No code (a proxy answered): by status.
        assert!(server_error_retryable(502, None));
        assert!(server_error_retryable(503, None));
        assert!(server_error_retryable(429, None));
        assert!(!server_error_retryable(400, None));
        assert!(!server_error_retryable(403, None));
    }

    #[test]
    fn messages_say_this_level_and_the_cause_follows() {
        let source = serde_json::from_str::<u8>("oops").unwrap_err();
        let err = ChError::Unreadable {
            line: "oops".into(),
            source,
        };
        assert_eq!(err.to_string(), "unexpected answer \"oops\"");
        let chain = format!("{:#}", anyhow::Error::new(err));
        assert!(
            chain.starts_with("unexpected answer \"oops\": expected value"),
            "{chain}"
        );
    }
}
