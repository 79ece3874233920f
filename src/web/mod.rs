//! The web tier: the button page, presses, stats, health, and the static assets.
//!
//! Handlers are thin: they extract a [`Visitor`], call one [`AppState`] method and
//! render. The tier keeps no state of its own between requests (the session lives
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

use crate::cli::{ServeArgs, StatsFrom};
use crate::domain::{Action, PressEvent, TrustedProxies};
use crate::geo::GeoDb;
use crate::kafka::KafkaPublisher;
use crate::publish::Publish;
use crate::replies::Replies;
use crate::session::{Session, SessionCodec};
use crate::stats::{GlobalStats, StatsError, StatsService, StatsSource};
use crate::store::SqliteStore;

/// The content security policy: nothing from any other origin, no inline code.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// How long the store-wide statistics are cached.
const STATS_TTL: Duration = Duration::from_secs(1);

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
        // Security headers on every response, errors included; error causes logged.
        .layer(axum::middleware::map_response(finish))
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

async fn finish(mut response: axum::response::Response) -> axum::response::Response {
    error::log_cause(&response);
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
    /// Opens the store, loads the geo database and binds the listener.
    pub async fn build(args: &ServeArgs) -> anyhow::Result<Self> {
        let geo = GeoDb::load(args.geoip_db.as_deref())?.with_fake_local(!args.no_fake_local_ip);
        tracing::info!(database = %geo.describe(), "geo database loaded");
        if !args.no_fake_local_ip {
            tracing::info!(
                "visitors from loopback or private addresses get a random real location \
                 (--no-fake-local-ip turns this off)"
            );
        }
        let replies = Replies::load(args.responses.as_deref())?;
        std::fs::create_dir_all(&args.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                args.data_dir.display()
            )
        })?;
        let secret = crate::session::load_or_create_secret(args.secret.as_deref(), &args.data_dir)?;
        let sessions =
            SessionCodec::new(&secret, args.cookie_secure).map_err(anyhow::Error::msg)?;

        let (publisher, stats) = pipeline(args).await?;

        let state = AppState {
            geo: Arc::new(geo),
            sessions: Arc::new(sessions),
            proxies: Arc::new(args.trusted_proxies.clone()),
            replies: Arc::new(replies),
            publisher: publisher.clone(),
            stats: Arc::new(StatsService::new(stats, STATS_TTL)),
            cohort: Some(args.cohort),
            attribution: attribution(args).into(),
        };
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        Ok(Server {
            listener,
            router: router(state),
            publisher,
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

/// Where events go and where statistics come from: Kafka when brokers are
/// configured, else the embedded SQLite store for both.
async fn pipeline(args: &ServeArgs) -> anyhow::Result<(Arc<dyn Publish>, Arc<dyn StatsSource>)> {
    if args.kafka.brokers().is_none() {
        let store = Arc::new(SqliteStore::open(&args.data_dir, args.queue_capacity)?);
        tracing::info!(path = %store.path().display(), "embedded event store open");
        return Ok((store.clone(), Arc::new(store)));
    }
    let encoder = crate::kafka::producer::encoder(args.format, &args.kafka, &args.registry).await?;
    let producer = KafkaPublisher::new(&args.kafka, encoder, args.delivery_timeout)?;
    tracing::info!(topic = %args.kafka.topic, format = ?args.format, "producing events to Kafka");
    let stats: Arc<dyn StatsSource> = match args.stats_from {
        None => Arc::new(NoStatsStore),
        Some(StatsFrom::Postgres) => {
            let url = args
                .postgres
                .url()
                .context("--stats-from postgres needs --postgres-url")?;
            Arc::new(crate::store::postgres::PgStore::connect(&url).await?)
        }
        Some(StatsFrom::Clickhouse) => {
            let url = args
                .clickhouse
                .url()
                .context("--stats-from clickhouse needs --clickhouse-url")?;
            Arc::new(crate::store::clickhouse::ChStore::connect(&url).await?)
        }
    };
    Ok((Arc::new(producer), stats))
}

/// Statistics when events go to Kafka and no store to read them back is configured.
struct NoStatsStore;

#[async_trait::async_trait]
impl StatsSource for NoStatsStore {
    async fn global(&self) -> Result<GlobalStats, StatsError> {
        Err(StatsError(
            "events go to Kafka and no statistics store is configured (--stats-from)".into(),
        ))
    }
    async fn session_presses(&self, _: Uuid) -> Result<u64, StatsError> {
        self.global().await.map(|_| 0)
    }
    async fn country_presses_since(&self, _: &str, _: i64) -> Result<u64, StatsError> {
        self.global().await.map(|_| 0)
    }
}

fn attribution(args: &ServeArgs) -> String {
    match &args.geoip_db {
        None => crate::geo::DEFAULT_DB_ATTRIBUTION.to_owned(),
        Some(_) => "IP geolocation: offline database configured by the operator.".to_owned(),
    }
}

/// `button serve`.
pub async fn run(args: ServeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let server = Server::build(&args).await?;
    tracing::info!("listening on http://{}", server.local_addr());
    server.run_until_stopped(shutdown).await
}
