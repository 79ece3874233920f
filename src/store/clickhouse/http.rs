//! Requests to ClickHouse's HTTP interface: one POST per statement, credentials in
//! headers, the database as a URL parameter.
//!
//! Guarantee: each call is one request on a pooled connection (a server that was
//! down is used again as soon as it answers); an answer is a success only with a
//! 2xx status, which ClickHouse sends after the whole query ran
//! (`wait_end_of_query=1`), so a failure mid-query is an error, never a truncated
//! result. Credentials travel in the `X-ClickHouse-User` and `X-ClickHouse-Key`
//! headers, never in a URL, a log line or an error.

use secrecy::ExposeSecret;
use serde::Deserialize;

use super::ChStore;
use super::error::{ChError, error_code};

/// Settings sent with the statistics' reads: each touches a granule or a few of
/// each part, and with one thread instead of one per core, visitors reading at
/// once contend less (four at once on two cores: 30-40% faster on 10 million
/// events in 9 parts; BENCHMARKS.md).
const READ_SETTINGS: [(&str, &str); 1] = [("max_threads", "1")];

/// ClickHouse's code for a setting a user in read-only mode may not change.
const READONLY: u32 = 164;

impl ChStore {
    /// A POST to the endpoint, in the store's database, with `params` and the
    /// credentials.
    pub(super) fn request(&self, params: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let mut url = self.endpoint.clone();
        url.query_pairs_mut()
            .append_pair("database", &self.database)
            .extend_pairs(params);
        let mut req = self.http.post(url);
        if let Some(user) = &self.user {
            req = req.header("X-ClickHouse-User", user);
        }
        if let Some(password) = &self.password {
            req = req.header("X-ClickHouse-Key", password.expose_secret());
        }
        req
    }

    /// Sends `req`; the answer's body, or why there is none.
    pub(super) async fn send(&self, req: reqwest::RequestBuilder) -> Result<String, ChError> {
        let resp = req
            .send()
            .await
            .map_err(|e| ChError::Transport(e.without_url()))?;
        let status = resp.status();
        let header_code = resp
            .headers()
            .get("X-ClickHouse-Exception-Code")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = resp
            .text()
            .await
            .map_err(|e| ChError::Transport(e.without_url()))?;
        if status.is_success() {
            return Ok(body);
        }
        Err(ChError::Server {
            status: status.as_u16(),
            code: header_code.or_else(|| error_code(&body)),
            message: truncate(body.trim(), 1000).to_owned(),
        })
    }

    /// Runs `sql` (the whole answer is computed before the status is sent, so a
    /// failure mid-query is an error status, not a truncated 200).
    pub(super) async fn query(&self, sql: &str) -> Result<String, ChError> {
        self.query_with(sql, &[]).await
    }

    /// [`Self::query`] with `settings` for this statement.
    async fn query_with(&self, sql: &str, settings: &[(&str, &str)]) -> Result<String, ChError> {
        let mut params = vec![("wait_end_of_query", "1")];
        params.extend_from_slice(settings);
        self.send(self.request(&params).body(sql.to_owned())).await
    }

    /// Runs `sql` (ending in `FORMAT JSONEachRow`) and reads its rows.
    pub(super) async fn query_rows<T: for<'de> Deserialize<'de>>(
        &self,
        sql: &str,
    ) -> Result<Vec<T>, ChError> {
        parse_rows(&self.query(sql).await?)
    }

    /// Runs the read `sql` (ending in `FORMAT JSONEachRow`) with [`READ_SETTINGS`],
    /// and reads its rows. A user in read-only mode (`readonly=1`) may not send
    /// settings: after its first refusal, reads go without them.
    pub(super) async fn read_rows<T: for<'de> Deserialize<'de>>(
        &self,
        sql: &str,
    ) -> Result<Vec<T>, ChError> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.read_settings.load(Relaxed) {
            match self.query_with(sql, &READ_SETTINGS).await {
                Err(ChError::Server {
                    code: Some(READONLY),
                    ..
                }) => {
                    if self.read_settings.swap(false, Relaxed) {
                        tracing::info!(
                            target = %self.target,
                            "this ClickHouse user may not change settings (read-only mode); \
                             statistics are read with the server's own max_threads"
                        );
                    }
                }
                answer => return parse_rows(&answer?),
            }
        }
        self.query_rows(sql).await
    }
}

/// Rows of a `FORMAT JSONEachRow` answer.
pub(super) fn parse_rows<T: for<'de> Deserialize<'de>>(body: &str) -> Result<Vec<T>, ChError> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|source| ChError::Unreadable {
                line: truncate(l, 200).to_owned(),
                source,
            })
        })
        .collect()
}

/// At most the first `max` characters of `s`.
pub(super) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_answers_are_cut_on_character_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("hé", 5), "hé");
    }

    #[tokio::test]
    async fn a_refused_connection_says_so_below_the_requests_own_message() {
        let e = reqwest::Client::new()
            .post("http://localhost:1/")
            .send()
            .await
            .expect_err("nothing listens on port 1");
        let err = ChError::Transport(e.without_url());
        let this_level = err.to_string();
        let chain = format!("{:#}", anyhow::Error::new(err));
        assert!(chain.starts_with(&this_level), "{chain}");
        assert!(chain.len() > this_level.len(), "{chain}");
        assert!(!this_level.contains("localhost"), "{this_level}");
    }
}
