//! The web tier: the button page, presses, stats, health, and the static assets.
//!
//! Handlers are thin: they extract a [`Visitor`], call one [`AppState`] method and
//! render. What events go through and where statistics come from is built by
//! [`crate::pipeline`]; this module only serves HTTP. The tier keeps no state of its own between requests (the session lives
//! in a signed cookie), so it scales horizontally behind a load balancer.

mod assets;
mod error;
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
pub use visitor::Visitor;

use crate::config::ServeConfig;
use crate::domain::{Action, PressEvent, TrustedProxies};
use crate::geo::GeoDb;
use crate::pipeline::Pipeline;
use crate::publish::Publish;
use crate::replies::Replies;
use crate::session::{Session, SessionCodec};
use crate::stats::StatsService;

/// The content security policy: nothing from any other origin, no inline code.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
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
}

impl AppState {
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
}

/// The application's routes and middleware around `state`.
pub fn router(state: AppState) -> Router {
    routes::routes()
        .with_state(state)
        // Security headers on every response, errors included.
        .layer(axum::middleware::map_response(secure))
        // Error bodies for their audience (fragment, JSON, page); causes logged once.
        .layer(axum::middleware::from_fn(error::finish))
        // Presses are tiny; anything bigger is not ours.
        .layer(RequestBodyLimitLayer::new(16 * 1024))
        // A request that takes this long is stuck; answer rather than hold shutdown.
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(10),
        ))
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

async fn secure(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, value);
    }
    response
}

/// A bound, ready-to-run server.
pub struct Server {
    listener: TcpListener,
    router: Router,
    publisher: Arc<dyn Publish>,
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
            SessionCodec::new(&secret, config.cookie_secure).map_err(anyhow::Error::msg)?;

        let state = AppState {
            geo: Arc::new(geo),
            sessions: Arc::new(sessions),
            proxies: Arc::new(config.trusted_proxies.clone()),
            replies: Arc::new(replies),
            publisher: pipeline.publisher.clone(),
            stats: pipeline.stats,
            cohort: Some(config.cohort),
            attribution: attribution(config).into(),
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(Server {
            listener,
            router: router(state),
            publisher: pipeline.publisher,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then drains requests and the store.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let app = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .context("the HTTP server failed")?;
        self.publisher.close().await;
        tracing::info!("stopped");
        Ok(())
    }
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
    //! refuses every event and a statistics source that is not configured (both
    //! stand-ins, to reach the error paths on demand).
    use super::*;
    use crate::publish::PublishError;
    use crate::stats::NotConfigured;
    use axum::body::Body;
    use axum::extract::connect_info::MockConnectInfo;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    struct Refusing;

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
        let state = AppState {
            geo: Arc::new(GeoDb::embedded().unwrap()),
            sessions: Arc::new(SessionCodec::new(&[7; 64], false).unwrap()),
            proxies: Arc::new(TrustedProxies::none()),
            replies: Arc::new(Replies::built_in()),
            publisher: Arc::new(Refusing),
            stats: Arc::new(StatsService::new(
                Arc::new(NotConfigured),
                Duration::from_secs(1),
            )),
            cohort: Some(0),
            attribution: "".into(),
        };
        router(state).layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 1))))
    }

    async fn send(req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let res = app().oneshot(req).await.unwrap();
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
}
