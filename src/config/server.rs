//! `[server]`: the HTTP listener, its limits and which proxies are believed
//! about the client's address.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{Cidr, ConfigError, DAEMON_FILE, invalid};

/// Default listen address: loopback, so a fresh install is not exposed.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default largest accepted request body (SPEC section 2).
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 256 * 1024;
/// A client must send its request headers within this time.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 5_000;
/// A client must send its whole body within this time (slow-loris bodies).
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 10_000;
/// A connection with no traffic and no request in flight is closed after this.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// On SIGTERM, in-flight requests get this long to finish.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
/// Webhook requests admitted at once (from before their body is read until
/// their event is stored); over it → 503.
pub const DEFAULT_MAX_IN_FLIGHT_STORES: usize = 4_096;
/// Open client connections at most; more wait in the listen backlog. Generous:
/// the systemd unit allows 65,536 descriptors, and the database pool, logs and
/// the RPC client need some too.
pub const DEFAULT_MAX_CLIENT_CONNECTIONS: usize = 10_000;
/// Concurrent HTTP/2 streams per connection (the RFC 9113 recommended minimum),
/// so one connection cannot open an unbounded number of requests.
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// The header a trusted proxy puts the client's address in.
pub const DEFAULT_CLIENT_IP_HEADER: &str = "x-forwarded-for";

/// The HTTP listener's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest accepted request body; larger → 413.
    pub body_limit_bytes: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout_ms: u64,
    /// Time a client has to send its request body.
    pub body_read_timeout_ms: u64,
    /// Time an idle keep-alive connection is kept open.
    pub idle_timeout_ms: u64,
    /// Time in-flight requests get to finish on shutdown; connections still
    /// open after it are closed.
    pub shutdown_grace_ms: u64,
    /// Admission limit: webhook requests between reading their body and being
    /// stored; over it → 503.
    pub max_in_flight_stores: usize,
    /// Open client connections at most; further ones wait to be accepted.
    /// Read at start-up.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams (requests) per connection.
    pub http2_max_concurrent_streams: u32,
    /// Proxies (CIDR ranges or addresses) whose `client_ip_header` is
    /// believed; from any other peer the header is ignored and the client is
    /// the TCP peer. Empty (the default): the client is always the peer.
    pub trusted_proxies: Vec<Cidr>,
    /// The header a trusted proxy names the client in: a comma-separated
    /// list of addresses, the nearest hop last (`X-Forwarded-For` style).
    pub client_ip_header: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("default listen address is valid"),
            body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            body_read_timeout_ms: DEFAULT_BODY_READ_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            max_in_flight_stores: DEFAULT_MAX_IN_FLIGHT_STORES,
            max_connections: DEFAULT_MAX_CLIENT_CONNECTIONS,
            http2_max_concurrent_streams: DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
            trusted_proxies: Vec::new(),
            client_ip_header: DEFAULT_CLIENT_IP_HEADER.into(),
        }
    }
}

// Three checks rather than one: `Config::validate` reports errors in the
// order they were always reported, and the database's and intake's timeouts
// come between the first two.
impl ServerConfig {
    /// The body limit and the client timeouts: none may be 0.
    pub(super) fn validate_body_and_timeouts(&self, errors: &mut Vec<ConfigError>) {
        if self.body_limit_bytes == 0 {
            errors.push(invalid(DAEMON_FILE, "server.body_limit_bytes", "must be greater than 0"));
        }
        for (key, value) in [
            ("server.header_read_timeout_ms", self.header_read_timeout_ms),
            ("server.body_read_timeout_ms", self.body_read_timeout_ms),
            ("server.idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if value == 0 {
                errors.push(invalid(DAEMON_FILE, key, "must be greater than 0"));
            }
        }
    }

    /// The admission, connection and stream limits: none may be 0.
    pub(super) fn validate_capacity(&self, errors: &mut Vec<ConfigError>) {
        for (key, value) in [
            ("server.max_in_flight_stores", self.max_in_flight_stores),
            ("server.max_connections", self.max_connections),
            ("server.http2_max_concurrent_streams", self.http2_max_concurrent_streams as usize),
        ] {
            if value == 0 {
                errors.push(invalid(DAEMON_FILE, key, "must be greater than 0"));
            }
        }
    }

    /// `client_ip_header` must be a header that holds an address list.
    pub(super) fn validate_client_ip_header(&self, errors: &mut Vec<ConfigError>) {
        match self.client_ip_header.parse::<http::HeaderName>() {
            Err(_) => errors.push(invalid(DAEMON_FILE, "server.client_ip_header", "not a valid HTTP header name")),
            // RFC 7239's `for=…;proto=…` syntax is not an address list.
            Ok(name) if name == http::header::FORWARDED => errors.push(invalid(
                DAEMON_FILE,
                "server.client_ip_header",
                "the RFC 7239 Forwarded header is not supported; have the proxy send X-Forwarded-For (or X-Real-IP)",
            )),
            Ok(_) => {}
        }
    }
}
