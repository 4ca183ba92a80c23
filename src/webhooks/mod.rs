//! Partner webhooks as pure logic: who the partners are, how their requests are
//! signed ([`signature`]), what their payloads must hold ([`event`], the one
//! schema of every event) and how they are keyed ([`payload`]).
//! Nothing here touches the network or the database.

pub mod event;
pub mod payload;
pub mod signature;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use event::EventData;
pub use payload::{Disposition, ParsedEvent, PayloadError};
pub use signature::{Scheme, SignatureError, Window};

/// A partner havend knows how to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Partner {
    /// Aurora, a hotel property management system.
    Aurora,
    /// Tribe, a community app.
    Tribe,
    /// Stripe payments.
    Stripe,
    /// Hi.Events, a ticketing platform.
    HiEvents,
}

impl Partner {
    /// Every partner, in a stable order.
    pub const ALL: [Partner; 4] = [Partner::Aurora, Partner::Tribe, Partner::Stripe, Partner::HiEvents];

    /// The partner's name in URLs, config and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Partner::Aurora => "aurora",
            Partner::Tribe => "tribe",
            Partner::Stripe => "stripe",
            Partner::HiEvents => "hi-events",
        }
    }

    /// The scheme a partner signs with unless the config says otherwise.
    pub fn default_scheme(self) -> Scheme {
        match self {
            Partner::Stripe => Scheme::Stripe,
            _ => Scheme::HavenHmac,
        }
    }

    /// The environment variable that overrides this partner's secrets.
    pub fn secrets_env(self) -> String {
        format!("HAVEND_{}_SECRETS", self.as_str().to_ascii_uppercase().replace('-', "_"))
    }

    /// The environment variable that sets this partner's API key (scheduled sync).
    pub fn api_key_env(self) -> String {
        format!("HAVEND_{}_API_KEY", self.as_str().to_ascii_uppercase().replace('-', "_"))
    }

    /// Stripe posts every event type to one URL; the others name the event in the path.
    pub fn event_in_path(self) -> bool {
        self != Partner::Stripe
    }
}

impl std::fmt::Display for Partner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Partner {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Partner::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| {
            let known: Vec<_> = Partner::ALL.iter().map(|p| p.as_str()).collect();
            format!("unknown partner {s:?}; known partners: {}", known.join(", "))
        })
    }
}

impl Serialize for Partner {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Partner {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}
