//! The web tier: the button page, presses, stats, health, and the static assets.
//!
//! Handlers are thin: they extract a [`Visitor`], call one [`AppState`] method and
//! render. What events go through and where statistics come from is built by
//! [`crate::pipeline`]; this module only serves HTTP. The tier keeps no state of its own between requests (the session lives
//! in a signed cookie), so it scales horizontally behind a load balancer.

mod assets;
mod conn;
mod dashboard;
mod error;
mod limit;
mod map;
mod origin;
mod routes;
mod templates;
mod visitor;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use uuid::Uuid;

pub use error::AppError;
use limit::PressLimits;
pub use visitor::Visitor;

use crate::config::ServeConfig;
use crate::domain::{Action, PressEvent, TrustedProxies};
use crate::geo::GeoDb;
use crate::live::Live;
use crate::pipeline::Pipeline;
use crate::publish::Publish;
use crate::replies::Replies;
use crate::session::{Session, SessionCodec};
use crate::stats::StatsService;

/// The content security policy: nothing from any other origin, no inline code.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Everything handlers share, behind one `Arc`: axum clones the state for every
/// request (and every extractor that takes it), so a clone is one counter, not
/// one per field (a dozen shared counters per request showed in profiles).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    /// Geolocation, used once per new session.
    pub geo: Arc<GeoDb>,
    /// Signs and verifies session cookies.
    pub sessions: Arc<SessionCodec>,
    /// Proxies whose forwarding headers count.
    pub proxies: Arc<TrustedProxies>,
    /// What a press answers.
    pub replies: Arc<Replies>,
    /// Where events go.
    pub publisher: Arc<dyn Publish>,
    /// Where statistics come from.
    pub stats: Arc<StatsService>,
    /// Cohort recorded with every event.
    pub cohort: Option<i32>,
    /// Attribution line the geo database's licence asks for.
    pub attribution: Arc<str>,
    /// How often one client may press.
    pub limits: Arc<PressLimits>,
    /// The live view the dashboard streams.
    pub live: Live,
    /// Ends the dashboards' streams when the server stops (they would otherwise
    /// hold the graceful shutdown open).
    pub live_stop: CancellationToken,
    /// Public views leave out countries with fewer presses than this.
    pub min_count: u64,
}

impl AppState {
    /// The state handlers get.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }

    /// Records that `session` did `action`; returns the event's id once it is durable.
    pub async fn record(&self, action: Action, session: &Session) -> Result<Uuid, AppError> {
        let now = SystemTime::now();
        let event = PressEvent::new(
            action,
            session.id,
            session.location.clone(),
            self.cohort,
            now,
        );
        let id = event.event_id;
        self.publisher.publish(event).await?;
        Ok(id)
    }

    /// What `visitor` sees on the dashboard. With Kafka and no statistics store,
    /// the live view's counts (since this server started) stand in for it.
    pub async fn viewer_stats(&self, visitor: &Visitor) -> Result<crate::stats::Stats, AppError> {
        let session = &visitor.session;
        match self
            .stats
            .for_viewer(session.id, &session.location, self.min_count)
            .await
        {
            Err(crate::stats::StatsError::NotConfigured) => Ok(dashboard::live_stats(
                &self.live.latest(),
                &session.location,
                self.min_count,
            )),
            other => other.map_err(AppError::from),
        }
    }
}

/// The application's routes and middleware around `state`.
pub fn router(state: AppState) -> Router {
    // Presses from this site's pages only, and within the limits: layers of that
    // route (inside `finish`, which renders their 403 and 429).
    routes::routes(state.limits.clone())
        .with_state(state)
        // Error bodies for their audience (fragment, JSON, page); causes logged once.
        .layer(axum::middleware::from_fn(error::finish))
        // Presses are tiny; anything bigger is not ours.
        .layer(RequestBodyLimitLayer::new(16 * 1024))
        // A request that takes this long is stuck; answer rather than hold shutdown.
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(10),
        ))
        // Outside everything that can answer by itself (limits, timeouts): security
        // headers on every response, and every response counted by status (one
        // layer for both: each layer costs a little on every request).
        .layer(axum::middleware::map_response(outgoing))
        // Spans carry method and path only: never the peer address. Failures are
        // logged once, with their cause, by `finish`; not again here.
        .layer(TraceLayer::new_for_http().on_failure(()))
}

/// Headers every response carries.
const SECURITY_HEADERS: [(HeaderName, HeaderValue); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    ),
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("interest-cohort=()"),
    ),
];

async fn outgoing(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, value);
    }
    count_response(response.status());
    response
}

/// A bound, ready-to-run server.
pub struct Server {
    listener: TcpListener,
    router: Router,
    publisher: Arc<dyn Publish>,
    max_connections: usize,
    live_stop: CancellationToken,
}

impl Server {
    /// Builds the pipeline, loads the geo database and binds the listener.
    pub async fn build(config: &ServeConfig) -> anyhow::Result<Self> {
        let pipeline = Pipeline::build(&config.pipeline).await?;
        Self::with_pipeline(config, pipeline).await
    }

    /// Serves `pipeline` (built by the caller, so it can hold on to parts of it,
    /// such as the tap).
    pub async fn with_pipeline(config: &ServeConfig, pipeline: Pipeline) -> anyhow::Result<Self> {
        let geo = GeoDb::load(config.geoip_db.as_deref())?.with_fake_local(config.fake_local_ip);
        tracing::info!(database = %geo.describe(), "geo database loaded");
        if config.fake_local_ip {
            tracing::info!(
                "visitors from loopback or private addresses get a random real location \
                 (--no-fake-local-ip turns this off)"
            );
        }
        let replies = Replies::load(config.responses.as_deref())?;
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let secret =
            crate::session::load_or_create_secret(config.secret.as_ref(), &config.data_dir)?;
        let sessions =
            Arc::new(SessionCodec::new(&secret, config.cookie_secure).map_err(anyhow::Error::msg)?);
        let proxies = Arc::new(config.trusted_proxies.clone());
        let limits = Arc::new(PressLimits::new(
            &config.limits,
            proxies.clone(),
            sessions.clone(),
        ));
        if limits.is_on() {
            forget_idle_buckets(&limits);
        }

        crate::telemetry::prometheus(); // metrics are recorded from the first request
        let live_stop = CancellationToken::new();
        let live = Live::spawn(pipeline.live, pipeline.stats.clone(), live_stop.clone());
        if !live.wait_following(Duration::from_secs(3)).await {
            tracing::warn!(
                "the live view does not follow the topic yet; it will once the broker answers"
            );
        }
        let state = AppState::new(Shared {
            geo: Arc::new(geo),
            sessions,
            proxies,
            replies: Arc::new(replies),
            publisher: pipeline.publisher.clone(),
            stats: pipeline.stats,
            cohort: Some(config.cohort),
            attribution: attribution(config).into(),
            limits,
            live,
            live_stop: live_stop.clone(),
            min_count: config.min_count,
        });
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(Server {
            listener,
            router: router(state),
            publisher: pipeline.publisher,
            max_connections: config.max_connections,
            live_stop,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        conn::local_addr(&self.listener)
    }

    /// Serves until `shutdown` is cancelled, then drains requests and the store.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let live_stop = self.live_stop.clone();
        let stopping = shutdown.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            live_stop.cancel();
        });
        conn::serve(self.listener, self.router, self.max_connections, shutdown).await;
        self.live_stop.cancel();
        self.publisher.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Counts a response by its status. Each status's counter is looked up once, not
/// on every response.
fn count_response(status: axum::http::StatusCode) {
    static BY_STATUS: std::sync::OnceLock<Vec<std::sync::OnceLock<metrics::Counter>>> =
        std::sync::OnceLock::new();
    let counters =
        BY_STATUS.get_or_init(|| (100..1000).map(|_| std::sync::OnceLock::new()).collect());
    // StatusCode is always 100..=999.
    let Some(counter) = counters.get(usize::from(status.as_u16()).saturating_sub(100)) else {
        return;
    };
    counter
        .get_or_init(|| {
            crate::telemetry::prometheus(); // a handle taken before it would count nothing
            metrics::counter!(crate::telemetry::metric::RESPONSES, "status" => status.as_str().to_owned())
        })
        .increment(1);
}

/// Every minute, drops the rate-limit buckets of clients that stopped pressing,
/// until the limits are dropped with the server.
fn forget_idle_buckets(limits: &Arc<PressLimits>) {
    let limits = Arc::downgrade(limits);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            match limits.upgrade() {
                Some(l) => l.forget_idle(),
                None => return,
            }
        }
    });
}

fn attribution(config: &ServeConfig) -> String {
    match &config.geoip_db {
        None => crate::geo::DEFAULT_DB_ATTRIBUTION.to_owned(),
        Some(_) => "IP geolocation: offline database configured by the operator.".to_owned(),
    }
}

/// `button serve`.
pub async fn run(config: ServeConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let server = Server::build(&config).await?;
    tracing::info!("listening on http://{}", server.local_addr());
    server.run_until_stopped(shutdown).await
}

#[cfg(test)]
mod tests {
    //! Router tests without a network: the real router over a destination that
    //! refuses every event and a statistics store that is down (both stand-ins,
    //! to reach the error paths on demand).
    use super::*;
    use crate::publish::PublishError;
    use crate::stats::NotConfigured;
    use axum::body::Body;
    use axum::extract::connect_info::MockConnectInfo;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    struct Refusing;

    /// A statistics store that is down.
    struct Down;

    #[async_trait::async_trait]
    impl crate::stats::StatsSource for Down {
        async fn global(&self) -> Result<crate::stats::GlobalStats, crate::stats::StatsError> {
            Err(crate::stats::StatsError::read("test store", "down"))
        }
        async fn session_presses(&self, _: Uuid) -> Result<u64, crate::stats::StatsError> {
            Err(crate::stats::StatsError::read("test store", "down"))
        }
        async fn country_presses_since(
            &self,
            _: &str,
            _: i64,
        ) -> Result<u64, crate::stats::StatsError> {
            Err(crate::stats::StatsError::read("test store", "down"))
        }
    }

    #[async_trait::async_trait]
    impl Publish for Refusing {
        async fn publish(&self, _: PressEvent) -> Result<(), PublishError> {
            Err(PublishError::Unavailable("disk on fire".into()))
        }
        fn is_ready(&self) -> bool {
            false
        }
        async fn close(&self) {}
    }

    fn app() -> Router {
        app_with_limits(crate::config::LimitConfig::OFF)
    }

    fn app_with_limits(limits: crate::config::LimitConfig) -> Router {
        let sessions = Arc::new(SessionCodec::new(&[7; 64], false).unwrap());
        let proxies = Arc::new(TrustedProxies::none());
        let state = AppState::new(Shared {
            geo: Arc::new(GeoDb::embedded().unwrap()),
            limits: Arc::new(PressLimits::new(&limits, proxies.clone(), sessions.clone())),
            sessions,
            proxies,
            replies: Arc::new(Replies::built_in()),
            publisher: Arc::new(Refusing),
            stats: Arc::new(StatsService::new(Arc::new(Down), Duration::from_secs(1))),
            cohort: Some(0),
            attribution: "".into(),
            live: Live::spawn(
                crate::live::Source::Tap(crate::pipeline::Tap::new()),
                Arc::new(StatsService::new(
                    Arc::new(NotConfigured),
                    Duration::from_secs(1),
                )),
                CancellationToken::new(),
            ),
            live_stop: CancellationToken::new(),
            min_count: 1,
        });
        router(state).layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 1))))
    }

    async fn send(req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        send_to(app(), req).await
    }

    async fn send_to(
        app: Router,
        req: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let res = app.oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    fn press(htmx: bool) -> Request<Body> {
        let mut req =
            Request::post("/press").header("content-type", "application/x-www-form-urlencoded");
        if htmx {
            req = req.header("hx-request", "true");
        }
        req.body(Body::from("last=")).unwrap()
    }

    #[tokio::test]
    async fn a_refused_press_gets_a_fragment_for_htmx_and_a_page_otherwise_and_keeps_the_cookie() {
        let (status, headers, body) = send(press(true)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains(error::TRY_AGAIN), "{body}");
        assert!(!body.contains("<html"), "a fragment, not a page: {body}");
        assert!(
            headers.contains_key("set-cookie"),
            "the new session is kept"
        );
        assert_eq!(headers["retry-after"], "1");
        assert!(headers.contains_key("content-security-policy"));
        assert!(
            !body.contains("disk on fire"),
            "the cause is logged, not shown"
        );

        let (status, _, body) = send(press(false)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("<html"), "{body}");
        assert!(body.contains("Try again in a moment"), "{body}");
    }

    #[tokio::test]
    async fn statistics_errors_are_json_under_api_and_html_elsewhere() {
        let (status, headers, body) =
            send(Request::get("/api/stats").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers["content-type"], "application/json");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "Statistics are not available");
        assert_eq!(json["status"], 503);
        assert!(headers.contains_key("set-cookie"));

        let (status, headers, body) =
            send(Request::get("/stats").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(body.contains("Statistics are not available"), "{body}");
    }

    #[tokio::test]
    async fn readiness_follows_the_destination() {
        let (status, _, _) = send(Request::get("/readyz").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, _, _) = send(Request::get("/healthz").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_press_over_the_limit_gets_429_a_retry_after_and_a_fragment_htmx_shows() {
        let app = app_with_limits(crate::config::LimitConfig {
            per_address: std::num::NonZeroU32::new(1),
            per_session: None,
        });
        // A burst of three (one a second, three seconds' worth): refused by the
        // destination with 503, but let through by the limit.
        for _ in 0..3 {
            let (status, _, _) = send_to(app.clone(), press(true)).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        }
        let (status, headers, body) = send_to(app.clone(), press(true)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["retry-after"], "1");
        assert!(body.contains(error::SLOW_DOWN), "{body}");
        assert!(!body.contains("<html"), "a fragment: {body}");
        assert!(headers.contains_key("content-security-policy"));
        // The page itself is not limited.
        let (status, _, _) = send_to(app, Request::get("/").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_press_from_another_site_is_refused_with_403_before_anything_is_recorded() {
        let req = Request::post("/press")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "cross-site")
            .body(Body::from("last="))
            .unwrap();
        let (status, headers, body) = send(req).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            body.contains("only takes presses from its own page"),
            "{body}"
        );
        assert!(headers.contains_key("x-content-type-options"));
        // Reading is fine from anywhere.
        let req = Request::get("/healthz")
            .header("sec-fetch-site", "cross-site")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(req).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn forget_me_deletes_the_session_cookie_and_says_so() {
        for req in [
            Request::post("/reset").body(Body::empty()).unwrap(),
            Request::get("/reset").body(Body::empty()).unwrap(),
        ] {
            let (status, headers, _) = send(req).await;
            assert_eq!(status, StatusCode::SEE_OTHER);
            assert_eq!(headers["location"], "/?forgotten=1");
            let cookie = headers["set-cookie"].to_str().unwrap();
            assert!(cookie.starts_with("button_session=;"), "{cookie}");
            assert!(cookie.contains("Max-Age=0"), "{cookie}");
        }
        let (_, _, body) = send(Request::get("/?forgotten=1").body(Body::empty()).unwrap()).await;
        assert!(body.contains("Forgotten."), "{body}");
        assert!(body.contains("Forget me"), "{body}");
    }
}
