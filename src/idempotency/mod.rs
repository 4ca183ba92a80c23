//! Idempotency keys for the token API (SPEC section 3).
//!
//! The database is the source of truth: the claim on a key is a row with a
//! lease token ([`store`]); the work and the stored response commit in one
//! transaction only while that token holds, so a first request stalled past
//! its lease cannot commit once a second one took the key over. Redis, when
//! configured, is a read-through cache in front of it ([`cache`]): completed
//! responses are replayed from it without touching the database, and an
//! in-flight mark answers 409 early; Redis being down, slow or emptied only
//! sends requests to the database.
//!
//! [`run_once`] is the state machine around one keyed write; this file
//! holds the pure parts: key syntax, the body's fingerprint and what to do
//! with a key row seen in the database.

pub mod cache;
mod run;
pub mod store;

pub use run::{Keyed, Ran, RunError, run_once};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The request header carrying the key.
pub const HEADER: &str = "idempotency-key";
/// The body field carrying the key when the header is absent.
pub const BODY_FIELD: &str = "idempotency_key";
/// Response header set on a replayed response.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Shortest accepted key.
pub const MIN_LEN: usize = 8;
/// Longest accepted key.
pub const MAX_LEN: usize = 64;

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 8–64 of `[A-Za-z0-9_-]`.
    #[error("Idempotency-Key must be {MIN_LEN}-{MAX_LEN} characters of [A-Za-z0-9_-]")]
    Malformed,
    /// The body's `idempotency_key` is not a string.
    #[error("idempotency_key in the body must be a string")]
    NotAString,
}

/// The key of a request: the header wins over the body's field.
pub fn key_of(header: Option<&str>, body: &serde_json::Value) -> Result<Option<String>, KeyError> {
    let key = match header {
        Some(key) => Some(key.to_owned()),
        None => match body.get(BODY_FIELD) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(key)) => Some(key.clone()),
            Some(_) => return Err(KeyError::NotAString),
        },
    };
    match key {
        Some(key) if !is_valid(&key) => Err(KeyError::Malformed),
        key => Ok(key),
    }
}

/// Whether `key` is 8–64 of `[A-Za-z0-9_-]`.
pub fn is_valid(key: &str) -> bool {
    (MIN_LEN..=MAX_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// SHA-256 (hex) of what the request asks for: its route and its body as
/// canonical JSON (keys sorted, no whitespace) without the key itself, so a
/// retry that formats the same body differently is the same request.
pub fn fingerprint(route: &str, body: &serde_json::Value) -> String {
    let mut body = body.clone();
    if let Some(object) = body.as_object_mut() {
        object.remove(BODY_FIELD);
    }
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(body.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

/// A response as stored and replayed: status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers worth replaying (never the request id).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

/// Whether a response is stored for replay: those that executed nothing
/// (401, 403, 429, 5xx) are not, so a retry runs again.
pub fn is_stored(status: u16) -> bool {
    !(matches!(status, 401 | 403 | 429) || status >= 500)
}

/// A key row as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The first request's fingerprint.
    pub fingerprint: String,
    /// The holder's lease, while in flight.
    pub lease_until: Option<DateTime<Utc>>,
    /// The stored response, once one committed.
    pub response: Option<StoredResponse>,
    /// When the key is forgotten.
    pub expires_at: DateTime<Utc>,
}

/// What a request does with a key that has a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Same body, a response is stored: answer it.
    Replay(StoredResponse),
    /// Another body was sent with this key: 422.
    Mismatch,
    /// Its first request is still running: 409.
    InFlight,
    /// Its holder's lease lapsed (a crash) or the key expired: take it over.
    TakeOver,
}

/// Decides from a key row seen at `now`. An expired key is forgotten
/// whatever it held; a lapsed lease without a response is free again.
pub fn decide(seen: &Seen, fingerprint: &str, now: DateTime<Utc>) -> Decision {
    if seen.expires_at <= now {
        return Decision::TakeOver;
    }
    if seen.fingerprint != fingerprint {
        return Decision::Mismatch;
    }
    match (&seen.response, seen.lease_until) {
        (Some(response), _) => Decision::Replay(response.clone()),
        (None, Some(until)) if until > now => Decision::InFlight,
        (None, _) => Decision::TakeOver,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn the_header_wins_over_the_body_and_both_are_checked() {
        let body = json!({ "idempotency_key": "from-body-1" });
        assert_eq!(key_of(Some("from-header"), &body), Ok(Some("from-header".into())));
        assert_eq!(key_of(None, &body), Ok(Some("from-body-1".into())));
        assert_eq!(key_of(None, &json!({})), Ok(None));
        assert_eq!(key_of(Some("short"), &body), Err(KeyError::Malformed));
        assert_eq!(key_of(None, &json!({ "idempotency_key": 12345678 })), Err(KeyError::NotAString));
        assert!(is_valid(&"a".repeat(64)) && !is_valid(&"a".repeat(65)) && !is_valid("has space!"));
    }

    #[test]
    fn fingerprints_ignore_formatting_and_the_key_but_not_the_route_or_values() {
        let a: serde_json::Value = serde_json::from_str(r#"{"user":"u","amount":"1.5","idempotency_key":"k-1234567"}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{ "amount" : "1.5", "user" : "u" }"#).unwrap();
        assert_eq!(fingerprint("mint", &a), fingerprint("mint", &b));
        assert_ne!(fingerprint("redeem", &a), fingerprint("mint", &a));
        assert_ne!(fingerprint("mint", &json!({"user":"u","amount":"1.50"})), fingerprint("mint", &b));
    }

    #[test]
    fn only_responses_that_executed_something_are_stored() {
        for status in [200, 201, 202, 400, 404, 409, 422] {
            assert!(is_stored(status), "{status}");
        }
        for status in [401, 403, 429, 500, 502, 503] {
            assert!(!is_stored(status), "{status}");
        }
    }

    fn response() -> StoredResponse {
        StoredResponse { status: 202, headers: vec![], body: "{}".into() }
    }

    proptest! {
        /// A key row is never both replayable and free: whatever its lease,
        /// a stored response within the TTL is replayed (same body) or
        /// refused (other body), and a running holder is never taken over.
        #[test]
        fn a_live_key_is_never_taken_over(lease_secs in -100i64..100, stored: bool, same: bool, ttl_secs in 1i64..1000) {
            let now = Utc::now();
            let seen = Seen {
                fingerprint: "fp".into(),
                lease_until: Some(now + Duration::seconds(lease_secs)),
                response: stored.then(response),
                expires_at: now + Duration::seconds(ttl_secs),
            };
            let decision = decide(&seen, if same { "fp" } else { "other" }, now);
            match (stored, same) {
                (_, false) => prop_assert_eq!(decision, Decision::Mismatch),
                (true, true) => prop_assert_eq!(decision, Decision::Replay(response())),
                (false, true) if lease_secs > 0 => prop_assert_eq!(decision, Decision::InFlight),
                (false, true) => prop_assert_eq!(decision, Decision::TakeOver),
            }
        }
    }

    #[test]
    fn an_expired_key_is_forgotten() {
        let now = Utc::now();
        let seen = Seen { fingerprint: "fp".into(), lease_until: None, response: Some(response()), expires_at: now };
        assert_eq!(decide(&seen, "other", now), Decision::TakeOver);
    }
}
