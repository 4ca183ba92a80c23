//! A string that never shows itself in logs, `Debug` output or printed config.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
