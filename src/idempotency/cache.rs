//! Redis in front of the database's idempotency keys, through `fred`.
//!
//! One Redis key per (API key, Idempotency-Key): an in-flight mark (set with
//! `NX` and the lease as its expiry) while the first request runs, then the
//! completed entry (fingerprint and response) for the rest of the key's
//! life. Redis is never the source of truth: a miss, an error or a slow
//! answer sends the request to the database, and every command fails fast
//! with a short timeout, so Redis down costs latency of at most
//! `redis.timeout_ms` per command and never correctness.

use std::time::Duration;

use fred::prelude::{Client, ClientLike, Config as RedisClientConfig, Expiration, KeysInterface, Options, ReconnectPolicy, SetOptions};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::StoredResponse;
use crate::config::RedisConfig;

/// Delay between reconnection attempts while Redis is down.
const RECONNECT_DELAY_MS: u32 = 1_000;

/// What the cache knows about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A completed request: its fingerprint and response.
    Done {
        /// The first request's fingerprint.
        fingerprint: String,
        /// Its response.
        response: StoredResponse,
    },
    /// A request holds the key now.
    InFlight,
    /// Nothing cached (or Redis unavailable): ask the database.
    Miss,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Entry {
    InFlight,
    Done { fingerprint: String, response: StoredResponse },
}

/// The Redis cache, or nothing when `[redis]` is not configured.
#[derive(Clone)]
pub struct Cache {
    client: Option<Client>,
    prefix: String,
    options: Options,
}

/// `/health`'s word for Redis.
pub fn health_word(cache: &Cache) -> &'static str {
    match &cache.client {
        None => "not_configured",
        Some(client) if client.is_connected() => "ok",
        Some(_) => "degraded",
    }
}

impl Cache {
    /// No cache: every lookup is a miss.
    pub fn none() -> Self {
        Self { client: None, prefix: String::new(), options: Options::default() }
    }

    /// Connects in the background per `config` (a Redis down at start-up is
    /// retried forever and the daemon serves from the database meanwhile).
    pub fn connect(config: &RedisConfig) -> Self {
        let Some(url) = &config.url else { return Self::none() };
        let timeout = Duration::from_millis(config.timeout_ms);
        let client = match RedisClientConfig::from_url(url.expose()) {
            Ok(mut client_config) => {
                client_config.fail_fast = false;
                fred::types::Builder::from_config(client_config)
                    .with_connection_config(|c| {
                        c.connection_timeout = Duration::from_secs(2);
                        c.internal_command_timeout = Duration::from_secs(2);
                        c.max_command_attempts = 1;
                    })
                    .with_performance_config(|p| p.default_command_timeout = timeout)
                    .set_policy(ReconnectPolicy::new_constant(0, RECONNECT_DELAY_MS))
                    .build()
            }
            Err(error) => Err(error),
        };
        match client {
            Ok(client) => {
                // The connection task runs (and reconnects) on its own; its
                // handle is not needed, and commands fail fast until it is up.
                drop(client.connect());
                let options = Options { fail_fast: true, timeout: Some(timeout), max_attempts: Some(1), ..Options::default() };
                Self { client: Some(client), prefix: config.key_prefix.clone(), options }
            }
            Err(error) => {
                warn!(%error, "Redis is configured but its client cannot be built; idempotency keys are served from the database alone");
                Self::none()
            }
        }
    }

    /// Whether a Redis is configured.
    pub fn is_configured(&self) -> bool {
        self.client.is_some()
    }

    fn redis_key(&self, api_key: &str, key: &str) -> String {
        format!("{}idem:{api_key}:{key}", self.prefix)
    }

    /// What Redis holds for the key; [`Lookup::Miss`] on any failure.
    pub async fn lookup(&self, api_key: &str, key: &str) -> Lookup {
        let Some(client) = &self.client else { return Lookup::Miss };
        let redis_key = self.redis_key(api_key, key);
        match client.with_options(&self.options).get::<Option<String>, _>(&redis_key).await {
            Ok(Some(text)) => match serde_json::from_str::<Entry>(&text) {
                Ok(Entry::InFlight) => Lookup::InFlight,
                Ok(Entry::Done { fingerprint, response }) => Lookup::Done { fingerprint, response },
                Err(_) => Lookup::Miss,
            },
            Ok(None) => Lookup::Miss,
            Err(error) => {
                debug!(%error, "Redis lookup failed; asking the database");
                Lookup::Miss
            }
        }
    }

    /// Marks the key in flight for `lease` (only if Redis has nothing for it).
    pub async fn mark_in_flight(&self, api_key: &str, key: &str, lease: Duration) {
        let Some(client) = &self.client else { return };
        let value = serde_json::to_string(&Entry::InFlight).unwrap_or_default();
        let expiry = Expiration::PX(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let result: Result<Option<String>, _> =
            client.with_options(&self.options).set(self.redis_key(api_key, key), value, Some(expiry), Some(SetOptions::NX), false).await;
        if let Err(error) = result {
            debug!(%error, "Redis in-flight mark failed");
        }
    }

    /// Caches a completed key's response for `ttl`.
    pub async fn store(&self, api_key: &str, key: &str, fingerprint: &str, response: &StoredResponse, ttl: Duration) {
        let Some(client) = &self.client else { return };
        if ttl.is_zero() {
            return;
        }
        let entry = Entry::Done { fingerprint: fingerprint.to_owned(), response: response.clone() };
        let Ok(value) = serde_json::to_string(&entry) else { return };
        let expiry = Expiration::PX(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1));
        let result: Result<Option<String>, _> =
            client.with_options(&self.options).set(self.redis_key(api_key, key), value, Some(expiry), None, false).await;
        if let Err(error) = result {
            debug!(%error, "Redis store failed");
        }
    }

    /// Forgets the in-flight mark of a key whose request executed nothing.
    pub async fn forget(&self, api_key: &str, key: &str) {
        let Some(client) = &self.client else { return };
        let result: Result<i64, _> = client.with_options(&self.options).del(self.redis_key(api_key, key)).await;
        if let Err(error) = result {
            debug!(%error, "Redis delete failed");
        }
    }
}
