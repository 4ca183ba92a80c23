//! The three signature schemes of SPEC section 2, as pure functions.
//!
//! Comparisons are constant-time; the timestamp window is checked before the
//! HMAC so a replayed request is refused cheaply; several secrets may be
//! active at once, and a signature made with any of them is accepted.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::Partner;
pub use crate::signing::Scheme;
use crate::signing::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The Stripe signature header.
pub const STRIPE_SIGNATURE: &str = "stripe-signature";
/// Standard Webhooks: the message id header (recorded, not the dedup key).
pub const WEBHOOK_ID: &str = "webhook-id";
/// Standard Webhooks: the timestamp header.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Standard Webhooks: the signature list header.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// Standard Webhooks secrets carry this prefix before their base64 key.
const WHSEC_PREFIX: &str = "whsec_";

/// What a signature covers besides the scheme's own parts (timestamp, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed<'a> {
    /// The event named in the URL, bound into a haven-hmac signature when the
    /// partner has `sign_event = true`: then a body captured for one event
    /// cannot be replayed to another (a `booking-created` body is also a
    /// valid `booking-cancelled` body). `None`: the body alone is signed.
    pub event: Option<&'a str>,
    /// The raw request body.
    pub body: &'a [u8],
}

impl<'a> Signed<'a> {
    /// A signature over `"{timestamp}.{event}.{body}"` (haven-hmac `sign_event`).
    pub fn event_and_body(event: &'a str, body: &'a [u8]) -> Self {
        Self { event: Some(event), body }
    }
}

impl<'a> From<&'a [u8]> for Signed<'a> {
    fn from(body: &'a [u8]) -> Self {
        Self { event: None, body }
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Signed<'a> {
    fn from(body: &'a [u8; N]) -> Self {
        Self { event: None, body }
    }
}

/// The accepted age of a signature timestamp.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Seconds a timestamp may lie in the past.
    pub past_secs: i64,
    /// Seconds a timestamp may lie in the future (clock skew).
    pub future_secs: i64,
}

/// What a valid signature tells about the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed timestamp (unix seconds).
    pub timestamp: i64,
    /// The Standard Webhooks message id, when the scheme has one.
    pub webhook_id: Option<String>,
}

/// Why a request's signature was refused (all map to 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(String),
    /// A header is present but cannot be read.
    #[error("malformed header {0}")]
    MalformedHeader(String),
    /// The timestamp is older than the window allows.
    #[error("signature timestamp is too old")]
    Expired,
    /// The timestamp lies too far in the future.
    #[error("signature timestamp is in the future")]
    FromTheFuture,
    /// No signature matches any active secret.
    #[error("no signature matches an active secret")]
    Mismatch,
}

impl Scheme {
    /// Checks that `secret` can be used as a key of this scheme (config validation).
    pub fn check_secret(self, secret: &Secret) -> Result<(), String> {
        if secret.expose().is_empty() {
            return Err("must not be empty".into());
        }
        if self == Scheme::StandardWebhooks {
            standard_webhooks_key(secret)
                .map_err(|_| "must be whsec_ followed by base64 (Standard Webhooks)".to_string())?;
        }
        Ok(())
    }

    /// Verifies the request's signature against every active secret.
    /// `signed.event` must be set exactly when the partner has `sign_event`,
    /// which config validation allows only where [`Scheme::can_sign_event`].
    pub fn verify<'a>(
        self,
        partner: Partner,
        headers: &HeaderMap,
        signed: impl Into<Signed<'a>>,
        secrets: &[Secret],
        now: i64,
        window: Window,
    ) -> Result<Verified, SignatureError> {
        let signed = signed.into();
        match self {
            Scheme::HavenHmac => verify_haven_hmac(partner, headers, signed, secrets, now, window),
            Scheme::Stripe => verify_stripe(headers, signed.body, secrets, now, window),
            Scheme::StandardWebhooks => verify_standard_webhooks(headers, signed.body, secrets, now, window),
        }
    }

    /// The headers a sender of this scheme attaches to a body (the
    /// `sign-webhook` command, the load generator and tests use it).
    /// `webhook_id` is used by Standard Webhooks only; an event to sign is
    /// refused by the schemes that cannot sign one.
    pub fn sign<'a>(
        self,
        partner: Partner,
        secret: &Secret,
        signed: impl Into<Signed<'a>>,
        timestamp: i64,
        webhook_id: &str,
    ) -> Result<Vec<(String, String)>, String> {
        let Signed { event, body } = signed.into();
        if event.is_some() && !self.can_sign_event() {
            return Err(format!("{self} signatures cannot include the event (sign_event is a haven-hmac option)"));
        }
        let timestamp_text = timestamp.to_string();
        Ok(match self {
            Scheme::HavenHmac => {
                let mac = hmac(secret.expose().as_bytes(), &haven_hmac_content(&timestamp_text, event, body));
                vec![
                    (haven_header(partner, "Signature"), hex::encode(mac)),
                    (haven_header(partner, "Timestamp"), timestamp.to_string()),
                ]
            }
            Scheme::Stripe => {
                let mac = hmac(secret.expose().as_bytes(), &[timestamp_text.as_bytes(), b".", body]);
                vec![("Stripe-Signature".into(), format!("t={timestamp},v1={}", hex::encode(mac)))]
            }
            Scheme::StandardWebhooks => {
                let key = standard_webhooks_key(secret)?;
                let mac = hmac(&key, &[webhook_id.as_bytes(), b".", timestamp_text.as_bytes(), b".", body]);
                vec![
                    ("webhook-id".into(), webhook_id.to_owned()),
                    ("webhook-timestamp".into(), timestamp.to_string()),
                    ("webhook-signature".into(), format!("v1,{}", BASE64.encode(mac))),
                ]
            }
        })
    }
}

/// The parts of a haven-hmac signed content: `"{timestamp}.{body}"`, or
/// `"{timestamp}.{event}.{body}"` when the event is bound.
fn haven_hmac_content<'a>(timestamp: &'a str, event: Option<&'a str>, body: &'a [u8]) -> Vec<&'a [u8]> {
    match event {
        Some(event) => vec![timestamp.as_bytes(), b".", event.as_bytes(), b".", body],
        None => vec![timestamp.as_bytes(), b".", body],
    }
}

/// `X-Aurora-Signature`, `X-Hi-Events-Timestamp`, …: the partner's name in title case.
pub fn haven_header(partner: Partner, suffix: &str) -> String {
    let title: Vec<String> = partner
        .as_str()
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    format!("X-{}-{suffix}", title.join("-"))
}

fn verify_haven_hmac(
    partner: Partner,
    headers: &HeaderMap,
    signed: Signed<'_>,
    secrets: &[Secret],
    now: i64,
    window: Window,
) -> Result<Verified, SignatureError> {
    let signature_header = haven_header(partner, "Signature");
    let timestamp_header = haven_header(partner, "Timestamp");
    let signature = header(headers, &signature_header)?;
    let timestamp = parse_timestamp(header(headers, &timestamp_header)?, &timestamp_header)?;
    check_window(timestamp, now, window)?;
    let hex_signature = signature.strip_prefix("sha256=").unwrap_or(signature);
    let candidate = hex::decode(hex_signature).map_err(|_| SignatureError::MalformedHeader(signature_header))?;
    let timestamp_text = timestamp.to_string();
    let content = haven_hmac_content(&timestamp_text, signed.event, signed.body);
    any_secret_matches(secrets.iter().map(|s| s.expose().as_bytes().to_vec()), &content, &[candidate])?;
    Ok(Verified { timestamp, webhook_id: None })
}

fn verify_stripe(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
    window: Window,
) -> Result<Verified, SignatureError> {
    let value = header(headers, STRIPE_SIGNATURE)?;
    let malformed = || SignatureError::MalformedHeader(STRIPE_SIGNATURE.into());
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for item in value.split(',') {
        let (key, val) = item.trim().split_once('=').ok_or_else(malformed)?;
        match key {
            "t" => timestamp = Some(val.parse::<i64>().map_err(|_| malformed())?),
            // Only v1 is trusted; v0 (test mode) and unknown schemes are ignored.
            "v1" => {
                if let Ok(bytes) = hex::decode(val) {
                    candidates.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(malformed)?;
    check_window(timestamp, now, window)?;
    let timestamp_text = timestamp.to_string();
    let signed = [timestamp_text.as_bytes(), b".", body];
    // Stripe's key is the secret string itself, `whsec_` prefix included.
    any_secret_matches(secrets.iter().map(|s| s.expose().as_bytes().to_vec()), &signed, &candidates)?;
    Ok(Verified { timestamp, webhook_id: None })
}

fn verify_standard_webhooks(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
    window: Window,
) -> Result<Verified, SignatureError> {
    let id = header(headers, WEBHOOK_ID)?;
    let timestamp = parse_timestamp(header(headers, WEBHOOK_TIMESTAMP)?, WEBHOOK_TIMESTAMP)?;
    let signatures = header(headers, WEBHOOK_SIGNATURE)?;
    check_window(timestamp, now, window)?;
    let candidates: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, sig)| BASE64.decode(sig).ok())
        .collect();
    let timestamp_text = timestamp.to_string();
    let signed = [id.as_bytes(), b".", timestamp_text.as_bytes(), b".", body];
    // The key is the base64-decoded part after `whsec_`, not the string.
    let keys = secrets.iter().filter_map(|s| standard_webhooks_key(s).ok());
    any_secret_matches(keys, &signed, &candidates)?;
    Ok(Verified { timestamp, webhook_id: Some(id.to_owned()) })
}

fn standard_webhooks_key(secret: &Secret) -> Result<Vec<u8>, String> {
    let encoded = secret.expose().strip_prefix(WHSEC_PREFIX).unwrap_or(secret.expose());
    BASE64.decode(encoded).map_err(|e| e.to_string())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, SignatureError> {
    let value = headers.get(name).ok_or_else(|| SignatureError::MissingHeader(name.to_owned()))?;
    value.to_str().map(str::trim).map_err(|_| SignatureError::MalformedHeader(name.to_owned()))
}

fn parse_timestamp(value: &str, name: &str) -> Result<i64, SignatureError> {
    value.parse().map_err(|_| SignatureError::MalformedHeader(name.to_owned()))
}

fn check_window(timestamp: i64, now: i64, window: Window) -> Result<(), SignatureError> {
    if timestamp < now.saturating_sub(window.past_secs) {
        Err(SignatureError::Expired)
    } else if timestamp > now.saturating_add(window.future_secs) {
        Err(SignatureError::FromTheFuture)
    } else {
        Ok(())
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Succeeds when any candidate equals the HMAC under any key, compared in constant time.
fn any_secret_matches(
    keys: impl Iterator<Item = Vec<u8>>,
    signed: &[&[u8]],
    candidates: &[Vec<u8>],
) -> Result<(), SignatureError> {
    let mut matched = subtle::Choice::from(0);
    for key in keys {
        let expected = hmac(&key, signed);
        for candidate in candidates {
            matched |= expected.as_slice().ct_eq(candidate.as_slice());
        }
    }
    if bool::from(matched) { Ok(()) } else { Err(SignatureError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const WINDOW: Window = Window { past_secs: 300, future_secs: 60 };

    fn headers(pairs: &[(String, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(http::HeaderName::try_from(name.as_str()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn standard_webhooks_published_vector_verifies() {
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let map = headers(&[
            ("webhook-id".into(), "msg_p5jXN8AQM9LWM0D4loKWxJek".into()),
            ("webhook-timestamp".into(), "1614265330".into()),
            ("webhook-signature".into(), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into()),
        ]);
        let verified = Scheme::StandardWebhooks
            .verify(Partner::HiEvents, &map, body, std::slice::from_ref(&secret), 1614265330, WINDOW)
            .unwrap();
        assert_eq!(verified.webhook_id.as_deref(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
        let signed = Scheme::StandardWebhooks
            .sign(Partner::HiEvents, &secret, body, 1614265330, "msg_p5jXN8AQM9LWM0D4loKWxJek")
            .unwrap();
        assert_eq!(signed[2].1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn standard_webhooks_ignores_unknown_versions_and_tries_every_v1() {
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let map = headers(&[
            ("webhook-id".into(), "msg_p5jXN8AQM9LWM0D4loKWxJek".into()),
            ("webhook-timestamp".into(), "1614265330".into()),
            (
                "webhook-signature".into(),
                "v2,AAAA v1,bm90IGl0 v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into(),
            ),
        ]);
        assert!(Scheme::StandardWebhooks.verify(Partner::HiEvents, &map, br#"{"test": 2432232314}"#, &[secret], 1614265330, WINDOW).is_ok());
    }

    #[test]
    fn standard_webhooks_key_is_the_decoded_secret_not_the_string() {
        // A sender that keyed the HMAC with the whole string must be refused.
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let wrong = hmac(secret.expose().as_bytes(), &[b"msg_1.1614265330.{}"]);
        let map = headers(&[
            ("webhook-id".into(), "msg_1".into()),
            ("webhook-timestamp".into(), "1614265330".into()),
            ("webhook-signature".into(), format!("v1,{}", BASE64.encode(wrong))),
        ]);
        assert_eq!(
            Scheme::StandardWebhooks.verify(Partner::HiEvents, &map, b"{}", &[secret], 1614265330, WINDOW),
            Err(SignatureError::Mismatch)
        );
    }

    /// Made with the official `stripe` npm package's
    /// `stripe.webhooks.generateTestHeaderString` (see tests/fixtures/stripe/).
    #[test]
    fn stripe_sdk_vector_verifies() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/stripe/signature_vector.json")).unwrap();
        let secret = Secret::new(fixture["secret"].as_str().unwrap());
        let body = fixture["payload"].as_str().unwrap().as_bytes();
        let timestamp = fixture["timestamp"].as_i64().unwrap();
        let map = headers(&[("stripe-signature".into(), fixture["header"].as_str().unwrap().into())]);
        assert!(Scheme::Stripe.verify(Partner::Stripe, &map, body, std::slice::from_ref(&secret), timestamp, WINDOW).is_ok());
        let ours = Scheme::Stripe.sign(Partner::Stripe, &secret, body, timestamp, "").unwrap();
        assert_eq!(ours[0].1, fixture["header"].as_str().unwrap());
    }

    #[test]
    fn stripe_ignores_v0_and_accepts_any_v1() {
        let secret = Secret::new("whsec_test");
        let body = b"{}";
        let good = Scheme::Stripe.sign(Partner::Stripe, &secret, body, 1000, "").unwrap()[0].1.clone();
        let good_v1 = good.split(",v1=").nth(1).unwrap();
        let only_v0 = headers(&[("stripe-signature".into(), format!("t=1000,v0={good_v1}"))]);
        assert_eq!(
            Scheme::Stripe.verify(Partner::Stripe, &only_v0, body, std::slice::from_ref(&secret), 1000, WINDOW),
            Err(SignatureError::Mismatch)
        );
        let two_v1 = headers(&[("stripe-signature".into(), format!("t=1000,v1=deadbeef,v1={good_v1}"))]);
        assert!(Scheme::Stripe.verify(Partner::Stripe, &two_v1, body, &[secret], 1000, WINDOW).is_ok());
    }

    #[test]
    fn haven_hmac_accepts_prefix_and_any_active_secret() {
        let old = Secret::new("old-secret");
        let new = Secret::new("new-secret");
        let body = br#"{"id":"bk_1"}"#;
        let mut signed = Scheme::HavenHmac.sign(Partner::HiEvents, &old, body, 5000, "").unwrap();
        assert_eq!(signed[0].0, "X-Hi-Events-Signature");
        signed[0].1 = format!("sha256={}", signed[0].1);
        let map = headers(&signed);
        assert!(Scheme::HavenHmac.verify(Partner::HiEvents, &map, body, &[new.clone(), old], 5000, WINDOW).is_ok());
        assert_eq!(
            Scheme::HavenHmac.verify(Partner::HiEvents, &map, body, &[new], 5000, WINDOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn sign_event_binds_the_url_event_so_a_body_cannot_be_replayed_to_another() {
        let secret = Secret::new("s");
        let body = br#"{"id":"bk_1"}"#;
        let verify = |headers: &HeaderMap, signed: Signed<'_>| {
            Scheme::HavenHmac.verify(Partner::Aurora, headers, signed, std::slice::from_ref(&secret), 10, WINDOW)
        };
        let created = headers(
            &Scheme::HavenHmac.sign(Partner::Aurora, &secret, Signed::event_and_body("booking-created", body), 10, "").unwrap(),
        );
        assert!(verify(&created, Signed::event_and_body("booking-created", body)).is_ok());
        assert_eq!(verify(&created, Signed::event_and_body("booking-cancelled", body)), Err(SignatureError::Mismatch));
        // The content is "{timestamp}.{event}.{body}", as a partner computes it.
        let expected = hmac(b"s", &[br#"10.booking-created.{"id":"bk_1"}"#]);
        assert_eq!(created[haven_header(Partner::Aurora, "Signature").as_str()], hex::encode(expected));
        // A body-only signature does not pass for a partner that binds the event.
        let plain = headers(&Scheme::HavenHmac.sign(Partner::Aurora, &secret, body, 10, "").unwrap());
        assert_eq!(verify(&plain, Signed::event_and_body("booking-created", body)), Err(SignatureError::Mismatch));
    }

    #[test]
    fn only_haven_hmac_can_sign_the_event() {
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        for scheme in [Scheme::Stripe, Scheme::StandardWebhooks] {
            assert!(!scheme.can_sign_event());
            assert!(scheme.sign(Partner::HiEvents, &secret, Signed::event_and_body("e", b"{}"), 1, "msg_1").is_err());
        }
    }

    #[test]
    fn timestamps_outside_the_window_are_refused() {
        let secret = Secret::new("s");
        let at = |ts: i64, now: i64| {
            let map = headers(&Scheme::HavenHmac.sign(Partner::Aurora, &secret, b"{}", ts, "").unwrap());
            Scheme::HavenHmac.verify(Partner::Aurora, &map, b"{}", std::slice::from_ref(&secret), now, WINDOW)
        };
        assert!(at(1000, 1300).is_ok());
        assert_eq!(at(1000, 1301), Err(SignatureError::Expired));
        assert!(at(1060, 1000).is_ok());
        assert_eq!(at(1061, 1000), Err(SignatureError::FromTheFuture));
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        let secret = Secret::new("s");
        let empty = HeaderMap::new();
        assert_eq!(
            Scheme::HavenHmac.verify(Partner::Aurora, &empty, b"{}", std::slice::from_ref(&secret), 0, WINDOW),
            Err(SignatureError::MissingHeader("X-Aurora-Signature".into()))
        );
        let bad = headers(&[("stripe-signature".into(), "garbage".into())]);
        assert_eq!(
            Scheme::Stripe.verify(Partner::Stripe, &bad, b"{}", &[secret], 0, WINDOW),
            Err(SignatureError::MalformedHeader("stripe-signature".into()))
        );
    }

    #[test]
    fn tampered_body_is_refused() {
        let secret = Secret::new("s");
        let map = headers(&Scheme::HavenHmac.sign(Partner::Tribe, &secret, br#"{"amount":1}"#, 10, "").unwrap());
        assert_eq!(
            Scheme::HavenHmac.verify(Partner::Tribe, &map, br#"{"amount":9}"#, &[secret], 10, WINDOW),
            Err(SignatureError::Mismatch)
        );
    }
}
