//! What [`config`](crate::config) and [`webhooks`](crate::webhooks) share
//! about signing: how a partner signs ([`Scheme`]) and the secret it signs
//! with ([`Secret`], a string that never shows itself in logs, `Debug` output
//! or printed config). A leaf: it uses no other module of the crate, so the
//! config can name schemes and the signature code can take secrets without
//! the two modules depending on each other.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a partner signs its requests (verified and produced in
/// [`webhooks::signature`](crate::webhooks::signature)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// `X-{Partner}-Signature` = hex HMAC-SHA256 of `"{timestamp}.{body}"`, or
    /// of `"{timestamp}.{event}.{body}"` for a partner with `sign_event = true`.
    HavenHmac,
    /// `Stripe-Signature: t=…,v1=…`; the key is the secret string as given.
    Stripe,
    /// `webhook-id` / `webhook-timestamp` / `webhook-signature`; the key is
    /// the base64-decoded part of `whsec_…`.
    StandardWebhooks,
}

impl Scheme {
    /// Whether the signed content can include the URL's event (`sign_event`):
    /// Stripe and Standard Webhooks define their signed content themselves.
    pub fn can_sign_event(self) -> bool {
        self == Scheme::HavenHmac
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scheme::HavenHmac => "haven-hmac",
            Scheme::Stripe => "stripe",
            Scheme::StandardWebhooks => "standard-webhooks",
        })
    }
}

/// What a secret prints as wherever it could leak.
pub const REDACTED: &str = "[redacted]";

/// A secret value (webhook secret, database password, API key).
///
/// `Debug`, `Display` and `Serialize` print [`REDACTED`]; only
/// [`Secret::expose`] gives the value, so every use is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: call only where it is used (an HMAC key, a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted_in_debug_and_serialization() {
        let secret = Secret::new("whsec_topsecret");
        assert_eq!(format!("{secret:?}"), REDACTED);
        let json = serde_json::to_string(&secret).unwrap();
        assert!(!json.contains("topsecret"));
        assert_eq!(secret.expose(), "whsec_topsecret");
    }
}
