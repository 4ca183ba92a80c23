//! The hyper listener: HTTP/1.1 and HTTP/2 on one port, a request id on every
//! exchange, header/body/idle timeouts, a cap on connections and on HTTP/2
//! streams per connection, and graceful shutdown that lets in-flight requests
//! finish within the grace period and then closes what is still open.
//!
//! It is not an actor: each connection is a task that verifies and validates
//! a request with pure functions and then makes one timed call to the intake
//! actor.

mod admin;
mod api;
pub mod auth;
mod cross_app;
mod error;
pub mod guard;
mod health;
pub mod openapi;
pub mod limits;
pub mod routes;
mod stream;
mod trail;
mod webhook;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use sea_orm::DatabaseConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

pub use admin::AdminHandles;
pub use error::ApiError;
pub use limits::RateLimits;

use crate::config::ConfigHandle;
use crate::intake::IntakeSlot;
use crate::idempotency::cache::Cache;
use routes::Endpoint;

/// The request id header, honoured when valid and echoed on every response.
pub const REQUEST_ID: &str = "x-request-id";
/// Longest request id taken from a client.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// How often a connection checks whether it has been idle too long.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A response body: buffered for JSON answers, streaming for server-sent
/// events; boxed so every handler returns one type.
pub type Body = BoxBody<Bytes, Infallible>;

/// A response.
pub type Response = http::Response<Body>;

/// A buffered body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// What every request handler can reach.
pub struct AppState {
    /// The current config snapshot.
    pub config: ConfigHandle,
    /// The database, for `/health`.
    pub db: DatabaseConnection,
    /// The current intake actor.
    pub intake: IntakeSlot,
    /// The chain side, when configured.
    pub chain: crate::slots::ChainSlot,
    /// Master keys, to create custodial wallets for users first seen by an API mint.
    pub keys: Option<crate::custody::MasterKeys>,
    /// The idempotency cache (Redis, or none).
    pub idempotency: Cache,
    /// Admission limit on webhook requests from before their body is read
    /// until their event is stored.
    pub admission: Semaphore,
    /// Per-partner and per-client-IP webhook rate limits; they follow the config.
    pub limits: RateLimits,
    /// Open SSE streams (`stream.max_streams` permits, sized at start): a
    /// stream holds its permit until it ends.
    pub streams: Arc<Semaphore>,
    /// Turns true when the daemon shuts down: open SSE streams end then, so
    /// their connections can close within the grace period.
    pub shutdown: watch::Receiver<bool>,
    /// What only the admin API needs (config reload, processor nudges).
    pub admin: AdminHandles,
}

/// Serves `listener` until `shutdown` turns true, then stops accepting, waits
/// up to the configured grace period for open requests to finish, and closes
/// the connections still open after it.
///
/// At most `server.max_connections` connections are open at once: a slot is
/// taken before `accept`, so further clients wait in the kernel's listen
/// backlog rather than costing a task and buffers each.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: watch::Receiver<bool>) {
    let connections = TaskTracker::new();
    let force_close = CancellationToken::new();
    let slots = Arc::new(Semaphore::new(state.config.load().server.max_connections));
    let purge = tokio::spawn(purge_rate_limits(state.clone(), shutdown.clone()));
    let mut stop = shutdown.clone();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                // The semaphore is never closed; should it be, stop serving rather than spin.
                Err(_) => break,
            },
            _ = stopped(&mut stop) => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let connection = serve_connection(stream, peer, state.clone(), shutdown.clone(), force_close.clone());
                    connections.spawn(async move {
                        connection.await;
                        drop(slot);
                    });
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    warn!(%error, "Accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    purge.abort();
    connections.close();
    let grace = Duration::from_millis(state.config.load().server.shutdown_grace_ms);
    info!(connections = connections.len(), "Listener closed; draining connections");
    if tokio::time::timeout(grace, connections.wait()).await.is_err() {
        warn!(connections = connections.len(), "Shutdown grace period over; closing remaining connections");
        // Each connection task drops its connection (closing the socket) as
        // soon as it sees the token, so this wait is short.
        force_close.cancel();
        connections.wait().await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<AppState>,
    mut shutdown: watch::Receiver<bool>,
    force_close: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let config = state.config.load_full();
    let activity = Arc::new(Activity::new());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.server.header_read_timeout_ms));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.server.http2_max_concurrent_streams);

    let service_activity = activity.clone();
    let service = service_fn(move |request| {
        let state = state.clone();
        let busy = service_activity.begin();
        async move {
            let response = route(&state, request, peer).await;
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);

    let idle_timeout = Duration::from_millis(config.server.idle_timeout_ms);
    let mut idle_check = tokio::time::interval(IDLE_CHECK_INTERVAL.min(idle_timeout));
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    debug!(%peer, %error, "Connection ended with an error");
                }
                break;
            }
            _ = force_close.cancelled() => {
                debug!(%peer, "Shutdown grace period over; closing the connection");
                break;
            }
            _ = stopped(&mut shutdown), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = idle_check.tick(), if !closing => {
                if activity.idle_for() >= idle_timeout {
                    debug!(%peer, "Closing idle connection");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Every [`limits::RATE_LIMIT_PURGE_INTERVAL`], forgets the per-IP limiter's
/// clients that are back to a fresh state, until shutdown.
async fn purge_rate_limits(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(limits::RATE_LIMIT_PURGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let tracked = state.limits.purge();
                debug!(tracked, "Purged the per-IP rate limiter");
            }
            _ = stopped(&mut shutdown) => return,
        }
    }
}

/// Completes once shutdown is signalled (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// Tracks a connection's requests in flight and when it was last busy.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    last_active_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self { start: Instant::now(), in_flight: AtomicUsize::new(0), last_active_ms: AtomicU64::new(0) }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_active_ms.load(Ordering::Acquire));
        self.start.elapsed().saturating_sub(last)
    }
}

/// A request in flight on a connection; dropping it marks the connection active now.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.0.start.elapsed().as_millis() as u64;
        self.0.last_active_ms.store(now, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Dispatches one request and stamps its request id on the response.
async fn route(state: &AppState, request: Request<Incoming>, peer: SocketAddr) -> Response {
    let request_id = request_id(&request);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let client = client_ip(state, &request, peer);
    let span = info_span!("request", request_id = %request_id, method = %method, path = %path, client_ip = %client);
    async {
        let result = dispatch(state, request, client, &request_id).await;
        let mut response = result.unwrap_or_else(|error| error.into_response(&request_id));
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        let status = response.status();
        if status.is_server_error() {
            trail::record_server_error(state, &response, &request_id, &method, &path);
            warn!(status = status.as_u16(), "Request answered with a server error");
        } else if status.is_client_error() {
            info!(status = status.as_u16(), "Request refused");
        } else {
            debug!(status = status.as_u16(), "Request answered");
        }
        response
    }
    .instrument(span)
    .await
}

/// Finds the request's route, checks its API key, and runs its handler.
async fn dispatch(state: &AppState, request: Request<Incoming>, client: IpAddr, request_id: &str) -> Result<Response, ApiError> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let (route, params) = match routes::find(&method, &path) {
        routes::Matched::Found(route, params) => (route, params),
        routes::Matched::WrongMethod(allowed) => return Err(ApiError::method_not_allowed(&allowed.join(", "))),
        routes::Matched::NotFound => return Err(ApiError::not_found(format!("no route for {method} {path}"))),
    };
    let caller = match route.scope {
        Some(scope) => Some(auth::authenticate(request.headers(), &state.config.load().api_keys, scope)?),
        None => None,
    };
    let param = |index: usize| params.get(index).copied().unwrap_or_default();
    match (route.endpoint, caller.as_ref()) {
        (Endpoint::StripeWebhook, _) => webhook::receive(state, request, "stripe", None, request_id, client).await,
        (Endpoint::Webhook, _) => webhook::receive(state, request, param(0), Some(param(1)), request_id, client).await,
        (Endpoint::Health, _) => Ok(health::health(state).await),
        (Endpoint::Metrics, _) => Ok(metrics()),
        (Endpoint::OpenApi, _) => Ok(json_text(StatusCode::OK, openapi::json())),
        (Endpoint::Mint, Some(caller)) => api::mint(state, request, caller, request_id).await,
        (Endpoint::Redeem, Some(caller)) => api::redeem(state, request, caller, request_id).await,
        (Endpoint::User, Some(_)) => api::user(state, param(0)).await,
        (Endpoint::Transaction, Some(_)) => api::transaction(state, param(0)).await,
        (Endpoint::GenerateSession, Some(caller)) => cross_app::generate_session(state, request, caller).await,
        (Endpoint::ValidateSession, _) => cross_app::validate_session(state, request).await,
        (Endpoint::UserAccounts, _) => cross_app::user_accounts(state, request).await,
        (Endpoint::ValidatePermission, _) => cross_app::validate_permission(state, request).await,
        (Endpoint::Stream, Some(_)) => stream::open(state, &request).await,
        (Endpoint::Admin(action), Some(caller)) => admin::handle(state, request, action, &params, caller, client, request_id).await,
        (endpoint, None) => Err(ApiError::internal(format!("route {endpoint:?} is missing its API key scope"))),
    }
}

/// The client's address: the TCP peer, or what a trusted proxy says (see [`guard::client_ip`]).
fn client_ip<B>(state: &AppState, request: &Request<B>, peer: SocketAddr) -> IpAddr {
    let config = state.config.load();
    guard::client_ip(peer.ip(), request.headers(), &config.server.client_ip_header, &config.server.trusted_proxies)
}

/// `GET /metrics`: the Prometheus text format, unauthenticated like
/// `/health` (the listener binds loopback by default; see the README).
fn metrics() -> Response {
    let mut response = http::Response::new(full(crate::telemetry::metrics::render()));
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// The client's `X-Request-Id` when it is up to 128 of `[A-Za-z0-9._-]`,
/// otherwise a new UUID.
fn request_id<B>(request: &Request<B>) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_valid_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A JSON response with the given status.
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    json_text(status, body.to_string())
}

/// Reads a request's JSON object body within the configured body limit and
/// timeout; the request's head comes back for its headers.
pub(crate) async fn read_json(state: &AppState, request: Request<Incoming>) -> Result<(http::request::Parts, serde_json::Value), ApiError> {
    let (limit, timeout) = {
        let config = state.config.load();
        (config.server.body_limit_bytes, config.server.body_read_timeout_ms)
    };
    let (parts, body) = request.into_parts();
    let bytes = webhook::read_body(body, parts.headers.get(http::header::CONTENT_LENGTH), limit, timeout).await?;
    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_body(format!("the body is not JSON: {e}")))?;
    if !body.is_object() {
        return Err(ApiError::bad_body("the body must be a JSON object"));
    }
    Ok((parts, body))
}

/// A response whose body is already JSON text.
pub(crate) fn json_text(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut response = http::Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_honoured_only_when_well_formed() {
        assert!(is_valid_request_id("req-1.a_B"));
        assert!(!is_valid_request_id(""));
        assert!(!is_valid_request_id("has space"));
        assert!(!is_valid_request_id(&"a".repeat(129)));
        assert!(is_valid_request_id(&"a".repeat(128)));
        let request = Request::builder().header(REQUEST_ID, "bad id!").body(()).unwrap();
        assert!(uuid::Uuid::parse_str(&request_id(&request)).is_ok());
    }
}
