//! Value parsers shared by every command's flags: durations and secrets.

use std::time::Duration;

/// Parses `500ms`, `5s`, `2m`, `1h 30m` (humantime's units); a bare number is seconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map(Duration::from_secs)
            .map_err(|e| format!("`{s}`: {e}"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 500ms, 5s or 2m ({e})"))
}

/// Parses a password (or a value holding one) into a type whose `Debug` hides it.
pub fn secret(s: &str) -> Result<secrecy::SecretString, std::convert::Infallible> {
    Ok(secrecy::SecretString::from(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("7"), Ok(Duration::from_secs(7)));
        assert!(duration("soon").unwrap_err().contains("soon"));
    }

    #[test]
    fn secrets_do_not_print() {
        let s = secret("hunter2-secret").unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
