//! The rephub hub (`rephub serve`): the reputation database behind HTTP APIs.
//!
//! The folders follow the data flow, and imports point one way (down this list):
//!
//! ```text
//!  sources/ (pull: Vision One, TAXII, feeds) ─┐
//!  ingest/  (push: SMS API, /v3.0, STIX, REST) ┴─► store (one writer) ─► distribution/engine
//!                                                                   │        (filter sets)
//!  admin/   (keys, categories, filters, profiles, devices)          │            │
//!                                                                   ▼            ▼
//!                                 targets/ (SMS-compatible products)   distribution/ (device sync,
//!                                                                        CrowdSec, RPZ, reports)
//!                                                                              │ events
//!  connection/ (enrollment, mTLS to the upstream) ◄── sharing/ (durable spool ─► sinks) ◄┘
//! ```
//!
//! Underneath: `http/` (the one API error, extractors, authentication, the outbound client),
//! `state.rs` (what handlers share), `scheduler.rs` (everything that runs on an interval),
//! `keys.rs`, `secrets.rs`, `config.rs`, `tls.rs`. See `docs/architecture.md`.
//!
//! Invariants: credentials are never logged (request logs carry the method and path only, never the
//! query string, where SMS clients put `smspass`); keys are stored as SHA-256 hashes and compared in
//! constant time; every request that changes state is authenticated; a request that fails
//! validation changes nothing.
// The OpenAPI document is one `json!` literal, deeper than the default limit.
#![recursion_limit = "256"]

mod admin;
mod changed;
pub mod config;
pub(crate) mod connection;
mod console;
mod db;
mod distribution;
mod error;
mod files;
mod http;
mod ingest;
mod keys;
mod lease;
mod metrics;
mod passwords;
mod replicas;
pub mod sandbox;
mod scheduler;
mod secrets;
mod sharing;
mod sources;
mod state;
mod suspicious_object;
mod targets;
mod telemetry;
mod tls;
mod validate;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

pub use config::{Config, ConfigError, LogFormat, RpzDnsConfig};
pub use connection::ca::make_csr;
pub use error::HubError;
pub use keys::{Role, hash_key, new_key};
pub use sandbox::config::{AnalyzerChoice, LocalConfig, SandboxConfig};

/// A console password as the hub stores it (an argon2id PHC string), after the hub's rules for a
/// new password: `Err` says what is wrong with it.
pub fn hash_password(password: &str) -> Result<String, String> {
    passwords::check_new(password)?;
    passwords::hash(password)
}

/// Whether a console user name follows the hub's rule (`Err` says the rule).
pub fn check_user_name(name: &str) -> Result<(), String> {
    passwords::check_name(name)
}
pub use sharing::spec::{FileSpec, NatsSpec, SinkSpec, SyslogSpec};
pub use sharing::{FullPolicyName, SharingConfig};
pub use sources::{FeedFormat, FeedSpec, MispSpec, SourceSpec, TaxiiSpec, VisionOneSpec};
pub use state::AppState;
pub use targets::{ObjectTypes, Risk, TargetSpec};
pub use validate::SpecError;

/// Answers of known length up to this many bytes go uncompressed. A compressor's state is
/// about 200 KiB, allocated and zeroed per answer: for the few hundred bytes of the delta that
/// one write sends to every long-polling device, compressing cost more than sending (at 10,000
/// devices a quarter of the hub's CPU for the write), and saved a few hundred bytes each.
const COMPRESS_ABOVE: u64 = 4096;

/// HTTP/2 names the host in the request's `:authority` (its URI), not in a `Host` header. Give
/// such a request the `Host` header a proxy converting it to HTTP/1.1 would (RFC 9113, 8.3.1), so
/// that what reads `Host` — absolute `nextLink`s, the sign-in's same-origin check — sees the same
/// over either version.
async fn host_from_authority(mut req: axum::extract::Request) -> axum::extract::Request {
    if !req.headers().contains_key(axum::http::header::HOST)
        && let Some(host) = req
            .uri()
            .authority()
            .and_then(|a| axum::http::HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(axum::http::header::HOST, host);
    }
    req
}

/// The whole application: every route, with limits, timeouts and request logs.
pub fn app(state: AppState) -> Router {
    let config = state.config();
    // The console sends its requests to the API in-process (see `console/mod.rs`).
    let api = api(&state).with_state(state.clone());
    Router::new()
        .merge(api.clone())
        .merge(console::router(&state, api).with_state(state.clone()))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::metrics::count_requests,
        ))
        .layer(DefaultBodyLimit::max(config.max_body_bytes()))
        .layer(axum::middleware::map_request(host_from_authority))
        // The fastest level: a snapshot of 1,000,000 entries is 93 MB of lines, which the
        // default level (6) compresses in about a second — longer than everything else it takes
        // to send — while level 1 takes 0.4 s for an answer 13% larger.
        .layer(
            tower_http::compression::CompressionLayer::new()
                .quality(tower_http::CompressionLevel::Fastest)
                .compress_when(DefaultPredicate::new().and(SizeAbove::new(COMPRESS_ABOVE))),
        )
        .layer(http::time_limit::TimeLimitLayer(Duration::from_secs(
            config.request_timeout_secs,
        )))
        .layer(
            // Method and path only: SMS clients send `smsuser`/`smspass` in the query string.
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
            }),
        )
        // Outside the trace layer, so that its span has the id; the answer carries it back.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, RequestIds::default()))
}

/// Every API route (everything but the console).
fn api(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/healthz", get(admin::health::live))
        .route("/readyz", get(admin::health::ready))
        .route("/metrics", get(admin::metrics::metrics))
        .route(
            "/api/v1/openapi.json",
            get(|| async { axum::Json(http::openapi::document()) }),
        )
        .merge(ingest::router(state))
        .merge(admin::router(state))
        .merge(distribution::router(state))
        .merge(sources::api::router(state))
        .merge(targets::api::router(state))
        .merge(connection::api::router(state))
        .merge(sharing::api::router(state))
        .merge(sharing::receiver::router(state))
        .merge(sharing::filter_status::router(state))
        .merge(sharing::inventory::router(state))
        .merge(sharing::deploy::router(state))
        .merge(telemetry::router(state))
        .merge(sandbox::router(state))
}

const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// Request ids: the client's `X-Request-Id` if it sent one (kept by the layer), else a new one
/// unique in this process and unlikely to repeat across restarts (start time and a counter).
#[derive(Clone, Default)]
struct RequestIds {
    next: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let start = *START.get_or_init(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64)
        });
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        axum::http::HeaderValue::from_str(&format!("{start:x}-{n:x}"))
            .ok()
            .map(RequestId::new)
    }
}

/// A hub that is listening.
#[derive(Debug)]
pub struct RunningHub {
    pub addr: SocketAddr,
    /// The HTTPS listener, if enabled.
    pub tls_addr: Option<SocketAddr>,
    /// The DNS listener of the RPZ zones (TCP and UDP), if enabled.
    pub rpz_dns_addr: Option<SocketAddr>,
    /// The admin key created on first start (shown once; only its hash is kept).
    pub initial_admin_key: Option<String>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), HubError>>,
}

impl RunningHub {
    /// Stop accepting, finish the requests in flight, and return.
    pub async fn stop(self) -> Result<(), HubError> {
        let _ = self.shutdown.send(());
        self.task.await?
    }

    /// Run until Ctrl-C or SIGTERM, then shut down gracefully.
    pub async fn wait_for_signal(self) -> Result<(), HubError> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.stop().await
    }
}

/// Connections waiting to be accepted. tokio's default (1,024) overflows when thousands of
/// devices reconnect at once (after a restart of the hub, say): their SYNs are dropped and
/// retried after 1, 3, 7 s…; the kernel caps this at `net.core.somaxconn` (4,096 by default).
const LISTEN_BACKLOG: u32 = 8192;

/// A listener on `addr` with [`LISTEN_BACKLOG`].
fn listen_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Open the database (creating the first admin key if there is none), bind, and serve in the
/// background.
pub async fn start(config: Config) -> Result<RunningHub, HubError> {
    start_with_clock(config, std::sync::Arc::new(rephub_model::SystemClock)).await
}

/// [`start`] with the time read from `clock` (expiry, schedules, certificate renewal).
pub async fn start_with_clock(
    config: Config,
    clock: std::sync::Arc<dyn rephub_model::Clock>,
) -> Result<RunningHub, HubError> {
    // Files the sandbox finds changed after this (less a second: file times are coarser than
    // the clock) are this run's own, not a crash's leftovers.
    let began = std::time::SystemTime::now() - Duration::from_secs(1);
    let listen = config.listen;
    let (state, initial_admin_key) = AppState::open_with_clock(config, clock).await?;
    // The sensor rollouts the database keeps, before anyone can ask for them.
    distribution::sensor::reload(&state).await?;
    if let rephub_store::Location::Postgres(conninfo) = state.config().db_location() {
        replicas::follow(&state, conninfo)?;
    }
    let listener = listen_on(listen).map_err(|e| HubError::Bind(listen.to_string(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| HubError::Bind(listen.to_string(), e))?;
    let tls_handle = axum_server::Handle::new();
    let tls_addr = if state.config().tls {
        let rustls = tls::server_config(
            state.config(),
            state.ca(),
            state.enrolled().clone(),
            state.clock(),
        )
        .await?;
        let std_listener = std::net::TcpListener::bind(state.config().tls_listen)
            .map_err(|e| HubError::Bind(state.config().tls_listen.to_string(), e))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| HubError::Bind(state.config().tls_listen.to_string(), e))?;
        let tls_addr = std_listener
            .local_addr()
            .map_err(|e| HubError::Bind(state.config().tls_listen.to_string(), e))?;
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls)
            .acceptor(axum_server::accept::NoDelayAcceptor::new());
        let server = axum_server::from_tcp(std_listener)
            .map_err(|e| HubError::Bind(tls_addr.to_string(), e))?
            .acceptor(acceptor)
            .handle(tls_handle.clone());
        let app = app(state.clone());
        tokio::spawn(async move {
            if let Err(e) = server.serve(app.into_make_service()).await {
                tracing::error!(error = %e, "HTTPS listener failed");
            }
        });
        tracing::info!(addr = %tls_addr, "rephub hub listening (HTTPS)");
        Some(tls_addr)
    } else {
        None
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn(state.engine().follow());
    console::warm(&state);
    sources::start_all(&state).await?;
    targets::start_all(&state).await?;
    sharing::start(&state).await?;
    let (rpz_dns_addr, dns_tasks) = match state.config().rpz_dns.listen {
        Some(listen) => {
            let cfg = state.config().rpz_dns.clone();
            let (a, t) = distribution::rpz_dns::start(&state, &cfg, listen).await?;
            (Some(a), t)
        }
        None => (None, Vec::new()),
    };
    // The hub's own chores run in the scheduler like sources and targets; the sweeper, like them,
    // on the replica that holds the scheduler lease only (`lease.rs`).
    let chores = scheduler::Registry::default();
    let led_chores = scheduler::Registry::led(state.lease());
    {
        let s = state.clone();
        let flush = scheduler::Every::new(Duration::from_secs(2), state.clock(), move || {
            let s = s.clone();
            async move {
                if let Err(e) = s.flush_progress().await {
                    tracing::warn!(error = %e, "recording device progress failed");
                }
            }
        });
        scheduler::spawn(&chores, "device progress", state.clock(), flush);
        let s = state.clone();
        let every = Duration::from_secs(state.config().sweep_secs);
        let sweep = scheduler::Every::new(every, state.clock(), move || {
            let s = s.clone();
            async move {
                match s.sweep().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(assertions = n, "removed expired entries"),
                    Err(e) => tracing::warn!(error = %e, "TTL sweep failed"),
                }
            }
        });
        scheduler::spawn(&led_chores, "sweeper", state.clock(), sweep);
        // Once across the cluster too: retention deletes the same rows anywhere, and two
        // submitters would hand the same pending submission to the analyzer twice.
        telemetry::start_retention(&state, &led_chores);
        sandbox::start(&state, &led_chores, began).await?;
    }
    let task = tokio::spawn(async move {
        // TCP_NODELAY: a long-poll answer is small and written in parts (head, then chunks);
        // with Nagle's algorithm a part waits for the ACK of the previous one, which the device
        // delays by up to 40 ms. Measured: write → enforced p90 55 ms with it, see BENCHMARKS.md.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        // Each connection gets a clone of the router, which shares its routing table (axum's
        // `Router` given to `axum::serve` as the listener's service converted a deep copy of it
        // for each connection: about 285 KiB for the hub's routes, 2.8 GB at 10,000 long-polling
        // devices). `http::serve` also lets a connection's answers be written together.
        let (stopping, tls) = (state.clone(), tls_handle.clone());
        http::serve::serve(listener, app(state.clone()), async move {
            let _ = rx.await;
            // Both listeners stop taking connections together (a device answered at once below
            // would otherwise poll again on the one still open), then parked long-polls answer
            // now: the connections can then close.
            tls.graceful_shutdown(Some(Duration::from_secs(10)));
            stopping.stop_waiting();
        })
        .await;
        follower.abort();
        for t in dns_tasks {
            t.abort();
        }
        state.sources().stop_all();
        state.targets().stop_all();
        state.spool().sinks().stop_all();
        chores.stop_all();
        led_chores.stop_all();
        if let Some(lease) = state.lease() {
            lease.release();
        }
        state.flush_progress().await?;
        Ok(())
    });
    tracing::info!(%addr, "rephub hub listening");
    Ok(RunningHub {
        addr,
        tls_addr,
        rpz_dns_addr,
        initial_admin_key,
        shutdown: tx,
        task,
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
