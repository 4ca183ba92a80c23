//! How urgent an alert is, below everything that raises, routes or configures
//! alerts: config names a channel's minimum severity, `alert` stores and
//! delivers by it. A leaf, so `config` need not import `alert`.

use serde::{Deserialize, Serialize};

/// How urgent an alert is. Ordered, so a channel's minimum severity compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// For the record.
    #[serde(alias = "info")]
    Info,
    /// Recovered or degraded; look when convenient.
    #[serde(alias = "warning")]
    Warning,
    /// Something failed; an operator should act.
    #[serde(alias = "error")]
    Error,
    /// Money or keys at risk; act now.
    #[serde(alias = "critical")]
    Critical,
}

impl Severity {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Critical => "CRITICAL",
        }
    }

    /// The severity of a stored name. A name this version does not know
    /// (written by a newer one) reads as ERROR, so it still reaches someone.
    pub fn from_stored(name: &str) -> Severity {
        match name {
            "INFO" => Severity::Info,
            "WARNING" => Severity::Warning,
            "CRITICAL" => Severity::Critical,
            _ => Severity::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Severity;

    #[test]
    fn severities_order_and_round_trip_their_stored_names() {
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Error && Severity::Error < Severity::Critical);
        for severity in [Severity::Info, Severity::Warning, Severity::Error, Severity::Critical] {
            assert_eq!(Severity::from_stored(severity.as_str()), severity);
        }
        assert_eq!(Severity::from_stored("PANIC"), Severity::Error);
    }
}
