//! Reading a ClickHouse URL: `http(s)://USER:PASSWORD@HOST:PORT/?database=NAME&...`.
//!
//! Guarantee: the credentials are taken out of the URL (they travel in headers,
//! never in a URL), percent-escapes decoded; credentials put where they would end
//! up in a URL (`?user=`, `?password=`) are refused; errors never echo the URL.

use percent_encoding::percent_decode_str;
use reqwest::Url;

/// Where to send requests, and as whom.
#[derive(Debug, PartialEq)]
pub(super) struct Endpoint {
    /// Scheme, host, port, path and extra settings; no credentials, no database.
    pub(super) url: Url,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) database: String,
}

/// The endpoint, credentials and database of a ClickHouse URL.
pub(super) fn parse_url(url: &str) -> anyhow::Result<Endpoint> {
    // Parse errors from `url` never echo the input, so no password leaks here.
    let mut url =
        Url::parse(url.trim()).map_err(|e| anyhow::anyhow!("invalid ClickHouse URL: {e}"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https"),
        "invalid ClickHouse URL: the scheme must be http or https, not {:?}",
        url.scheme()
    );
    anyhow::ensure!(url.has_host(), "invalid ClickHouse URL: no host");
    let user = Some(percent_decode(url.username())).filter(|u| !u.is_empty());
    let password = url.password().map(percent_decode);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut database = "default".to_owned();
    let mut settings = Vec::new();
    for (k, v) in url.query_pairs() {
        match &*k {
            "database" if !v.is_empty() => database = v.into_owned(),
            "user" | "password" | "query" => anyhow::bail!(
                "invalid ClickHouse URL: put the credentials before the host \
                 (https://USER:PASSWORD@HOST:PORT), not in a `{k}` parameter"
            ),
            _ => settings.push((k.into_owned(), v.into_owned())),
        }
    }
    url.set_query(None);
    if !settings.is_empty() {
        url.query_pairs_mut().extend_pairs(settings);
    }
    Ok(Endpoint {
        url,
        user,
        password,
        database,
    })
}

/// Decodes `%XX` escapes (and nothing else: `+` stays, as in URL user info).
fn percent_decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_endpoint_credentials_and_database() {
        let ep = parse_url("https://avnadmin:p%40ss%3Aw0rd@ch.example.com:12345/?database=button")
            .unwrap();
        assert_eq!(ep.user.as_deref(), Some("avnadmin"));
        assert_eq!(ep.password.as_deref(), Some("p@ss:w0rd"));
        assert_eq!(ep.database, "button");
        assert_eq!(ep.url.as_str(), "https://ch.example.com:12345/");

        let ep = parse_url("http://localhost:8123").unwrap();
        assert_eq!(ep.user, None);
        assert_eq!(ep.password, None);
        assert_eq!(ep.database, "default");
        assert_eq!(ep.url.as_str(), "http://localhost:8123/");

        let ep = parse_url("http://h:8123/?database=d&async_insert=1").unwrap();
        assert_eq!(ep.database, "d");
        assert_eq!(ep.url.as_str(), "http://h:8123/?async_insert=1");

        assert!(parse_url("clickhouse://h:9000").is_err());
        assert!(parse_url("h:8123").is_err());
        let err = parse_url("http://h/?password=hunter2").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
