//! The pure side of alert delivery: which channels an alert goes to, whether
//! a repeat is throttled, what each channel is sent, and the retry schedule.
//! The delivery actor only gathers the facts these functions need and
//! carries out what they decide.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Alert, Severity};
use crate::config::{AlertsConfig, ChannelConfig, ChannelKind};
use crate::retry::Backoff;

/// The channels `alert` is routed to: those whose minimum severity it
/// reaches and whose category filter (if any) names its category.
pub fn route<'c>(channels: &'c [ChannelConfig], severity: Severity, category: &str) -> Vec<&'c ChannelConfig> {
    channels
        .iter()
        .filter(|channel| severity >= channel.min_severity)
        .filter(|channel| channel.categories.is_empty() || channel.categories.iter().any(|c| c == category))
        .collect()
}

/// Whether repeats of `category` are throttled: all but the test alert,
/// which an operator asks for and expects to arrive every time.
pub fn throttles(category: &str) -> bool {
    category != super::SYSTEM_TEST
}

/// The throttle key of an alert: repeats share it. The subject is the
/// alert's message, so two alerts about different wallets (whose messages
/// name them) are not repeats of each other.
pub fn throttle_key(category: &str, subject: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(category.as_bytes());
    hasher.update([0]);
    hasher.update(subject.as_bytes());
    hex::encode(hasher.finalize())
}

/// The throttle window a category and subject are in, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The alert that opened it and was delivered.
    pub leader: Uuid,
    /// Repeats raised before this are throttled.
    pub until: DateTime<Utc>,
    /// Repeats throttled so far in it.
    pub suppressed: i64,
}

/// What to do with an alert, as far as throttling goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// Deliver it; it opens a new window. `repeats_before` repeats were
    /// throttled in the window before (the message says so).
    Lead {
        /// Repeats throttled in the previous window.
        repeats_before: i64,
    },
    /// A repeat within the window: count it, deliver nothing.
    Suppress,
}

/// Decides whether an alert raised at `raised_at` leads a new window or is
/// throttled. The alert's own time counts, not the delivery's, so alerts
/// that piled up while no daemon ran are throttled as they were raised. An
/// alert that already leads the window (a delivery cut short by a crash)
/// leads it again.
pub fn throttle(current: Option<&Window>, alert: Uuid, raised_at: DateTime<Utc>) -> Throttle {
    match current {
        None => Throttle::Lead { repeats_before: 0 },
        Some(window) if window.leader == alert => Throttle::Lead { repeats_before: 0 },
        Some(window) if raised_at < window.until => Throttle::Suppress,
        Some(window) => Throttle::Lead { repeats_before: window.suppressed },
    }
}

/// The one-line summary every channel starts with.
pub fn summary(alert: &Alert) -> String {
    format!("[{}] {}: {}", alert.severity.as_str(), alert.category, alert.message)
}

/// The note about repeats throttled before this alert, if any.
fn repeats_note(repeats_before: i64) -> Option<String> {
    (repeats_before > 0).then(|| format!("({repeats_before} repeats of this alert were throttled in the previous window)"))
}

/// The JSON body a webhook channel of `kind` is sent (e-mail has no body here).
pub fn webhook_body(kind: ChannelKind, alert: &Alert, repeats_before: i64, daemon: &str) -> Value {
    let mut text = summary(alert);
    if let Some(note) = repeats_note(repeats_before) {
        text.push(' ');
        text.push_str(&note);
    }
    match kind {
        ChannelKind::Slack => json!({ "text": text }),
        // Discord refuses content over 2000 characters.
        ChannelKind::Discord => json!({ "content": truncate(&text, 2_000) }),
        ChannelKind::Webhook | ChannelKind::Email => json!({
            "id": alert.id,
            "severity": alert.severity.as_str(),
            "category": alert.category,
            "message": alert.message,
            "details": alert.details,
            "created_at": alert.created_at.to_rfc3339(),
            "repeats_before": repeats_before,
            "daemon": daemon,
            "text": text,
        }),
    }
}

/// An e-mail's subject and plain-text body.
pub fn email(alert: &Alert, repeats_before: i64, daemon: &str) -> (String, String) {
    // Header injection: a message is operator-facing text, but a subject must stay one line.
    let subject = truncate(&summary(alert).replace(['\r', '\n'], " "), 200);
    let details = serde_json::to_string_pretty(&alert.details).unwrap_or_else(|_| alert.details.to_string());
    let mut body = format!(
        "{}\n\nSeverity: {}\nCategory: {}\nRaised at: {}\nAlert id: {}\nDaemon: {}\n\nDetails:\n{}\n",
        alert.message,
        alert.severity.as_str(),
        alert.category,
        alert.created_at.to_rfc3339(),
        alert.id,
        daemon,
        details,
    );
    if let Some(note) = repeats_note(repeats_before) {
        body.push('\n');
        body.push_str(&note);
        body.push('\n');
    }
    (subject, body)
}

pub use crate::config::alerts::RETRY_JITTER_FACTOR;

/// When a failed delivery round's alert gets its next round: after a wait as
/// long as the alert's age at the failure (so the waits roughly double),
/// at least `retry_base_ms` and at most `redelivery_max_ms`, shortened by up
/// to half at random (`jitter` in [0, 1)) so alerts that failed together do
/// not retry together. `None` when that would start after the delivery
/// horizon (`delivery_horizon_secs` after it was raised): the alert stays
/// `failed`.
pub fn next_round(config: &AlertsConfig, raised_at: DateTime<Utc>, failed_at: DateTime<Utc>, jitter: f64) -> Option<DateTime<Utc>> {
    let horizon = raised_at.checked_add_signed(chrono::Duration::seconds(i64::try_from(config.delivery_horizon_secs).ok()?))?;
    let age = (failed_at - raised_at).to_std().unwrap_or_default();
    let base = Duration::from_millis(config.retry_base_ms);
    let cap = Duration::from_millis(config.redelivery_max_ms).max(base);
    let wait = age.clamp(base, cap).mul_f64(1.0 - jitter.clamp(0.0, 1.0) / 2.0);
    let next = failed_at.checked_add_signed(chrono::Duration::from_std(wait).ok()?)?;
    (next <= horizon).then_some(next)
}

/// The waits between attempts on one channel: exponential from
/// `retry_base_ms`, capped at `retry_max_ms`, with jitter, `retries` of them.
pub fn retry_delays(config: &AlertsConfig) -> impl Iterator<Item = Duration> + Send + use<> {
    Backoff::doubling(Duration::from_millis(config.retry_base_ms), Duration::from_millis(config.retry_max_ms)).jittered().delays(config.retries)
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max_chars - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SmtpTls;
    use proptest::prelude::*;

    fn channel(name: &str, min_severity: Severity, categories: &[&str]) -> ChannelConfig {
        ChannelConfig {
            name: name.into(),
            kind: ChannelKind::Slack,
            min_severity,
            categories: categories.iter().map(|c| c.to_string()).collect(),
            url: None,
            host: None,
            port: None,
            tls: SmtpTls::Starttls,
            ca_file: None,
            username: None,
            password: None,
            from: None,
            to: Vec::new(),
        }
    }

    fn alert(severity: Severity, category: &str, message: &str) -> Alert {
        Alert {
            id: Uuid::nil(),
            severity,
            category: category.into(),
            message: message.into(),
            details: json!({"wallet": "0xabc"}),
            created_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    fn names(channels: Vec<&ChannelConfig>) -> Vec<&str> {
        channels.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn routing_honours_minimum_severity_and_category_filter() {
        let channels = [
            channel("all", Severity::Info, &[]),
            channel("pager", Severity::Critical, &[]),
            channel("chain", Severity::Warning, &["transaction_failed", "gas_price_spike"]),
        ];
        assert_eq!(names(route(&channels, Severity::Info, "system_test")), ["all"]);
        assert_eq!(names(route(&channels, Severity::Error, "transaction_failed")), ["all", "chain"]);
        assert_eq!(names(route(&channels, Severity::Info, "transaction_failed")), ["all"]);
        assert_eq!(names(route(&channels, Severity::Critical, "foreign_nonce")), ["all", "pager"]);
        assert!(route(&[], Severity::Critical, "foreign_nonce").is_empty());
    }

    #[test]
    fn first_alert_leads_repeats_within_the_window_are_suppressed_and_the_next_window_reports_them() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let (first, repeat, later) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        assert_eq!(throttle(None, first, t0), Throttle::Lead { repeats_before: 0 });
        let window = Window { leader: first, until: t0 + chrono::Duration::seconds(300), suppressed: 41 };
        assert_eq!(throttle(Some(&window), repeat, t0 + chrono::Duration::seconds(299)), Throttle::Suppress);
        assert_eq!(throttle(Some(&window), later, t0 + chrono::Duration::seconds(300)), Throttle::Lead { repeats_before: 41 });
        assert_eq!(throttle(Some(&window), first, t0), Throttle::Lead { repeats_before: 0 }, "a re-claimed leader is delivered again");
    }

    #[test]
    fn test_alerts_are_never_throttled() {
        assert!(!throttles(crate::alert::SYSTEM_TEST));
        assert!(throttles("circuit_open"));
    }

    #[test]
    fn throttle_key_separates_categories_and_subjects() {
        assert_eq!(throttle_key("circuit_open", "rpc"), throttle_key("circuit_open", "rpc"));
        assert_ne!(throttle_key("circuit_open", "rpc"), throttle_key("circuit_closed", "rpc"));
        assert_ne!(throttle_key("a", "bc"), throttle_key("ab", "c"));
    }

    #[test]
    fn slack_discord_and_generic_bodies_have_their_shapes() {
        let alert = alert(Severity::Error, "transaction_failed", "Intent 7 reverted");
        let slack = webhook_body(ChannelKind::Slack, &alert, 0, "d1");
        assert_eq!(slack, json!({"text": "[ERROR] transaction_failed: Intent 7 reverted"}));
        let discord = webhook_body(ChannelKind::Discord, &alert, 3, "d1");
        assert_eq!(
            discord["content"],
            "[ERROR] transaction_failed: Intent 7 reverted (3 repeats of this alert were throttled in the previous window)"
        );
        let generic = webhook_body(ChannelKind::Webhook, &alert, 0, "d1");
        assert_eq!(generic["severity"], "ERROR");
        assert_eq!(generic["details"]["wallet"], "0xabc");
        assert_eq!(generic["daemon"], "d1");
        assert_eq!(generic["created_at"], "2023-11-14T22:13:20+00:00");
    }

    #[test]
    fn discord_content_is_cut_to_its_limit() {
        let alert = alert(Severity::Info, "system_test", &"x".repeat(5_000));
        let content = webhook_body(ChannelKind::Discord, &alert, 0, "d1")["content"].as_str().unwrap().to_owned();
        assert_eq!(content.chars().count(), 2_000);
        assert!(content.ends_with('…'));
    }

    #[test]
    fn email_subject_is_one_line_and_body_carries_the_details() {
        let alert = alert(Severity::Critical, "foreign_nonce", "Nonce 5 used\r\nBcc: someone@example.com");
        let (subject, body) = email(&alert, 2, "d1");
        assert!(!subject.contains('\n') && !subject.contains('\r'), "{subject}");
        assert!(subject.starts_with("[CRITICAL] foreign_nonce: Nonce 5 used"));
        assert!(body.contains("\"wallet\": \"0xabc\""), "{body}");
        assert!(body.contains("2 repeats"), "{body}");
    }

    #[test]
    fn retry_schedule_has_the_configured_number_of_capped_delays() {
        let config = AlertsConfig { retries: 4, retry_base_ms: 100, retry_max_ms: 250, ..AlertsConfig::default() };
        let delays: Vec<_> = retry_delays(&config).collect();
        assert_eq!(delays.len(), 4);
        // Jitter adds up to one more delay on top of the capped one.
        assert!(delays.iter().all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_millis(500)), "{delays:?}");
    }

    fn redelivery(horizon_secs: u64, max_ms: u64) -> AlertsConfig {
        AlertsConfig { retry_base_ms: 1_000, redelivery_max_ms: max_ms, delivery_horizon_secs: horizon_secs, ..AlertsConfig::default() }
    }

    #[test]
    fn failed_rounds_wait_as_long_as_the_alert_is_old_up_to_the_cap_until_the_horizon() {
        let config = redelivery(86_400, 900_000);
        let raised = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let at = |secs: i64| raised + chrono::Duration::seconds(secs);
        assert_eq!(next_round(&config, raised, raised, 0.0), Some(raised + chrono::Duration::seconds(1)), "at least retry_base_ms");
        assert_eq!(next_round(&config, raised, at(60), 0.0), Some(at(120)), "the first round took a minute: wait a minute");
        assert_eq!(next_round(&config, raised, at(120), 0.0), Some(at(240)));
        assert_eq!(next_round(&config, raised, at(3_600), 0.0), Some(at(3_600 + 900)), "capped");
        assert_eq!(next_round(&config, raised, at(3_600), 0.5), Some(at(3_600 + 675)), "jitter shortens by up to half");
        assert_eq!(next_round(&config, raised, at(86_400 - 900), 0.0), Some(at(86_400)), "a round may start at the horizon");
        assert_eq!(next_round(&config, raised, at(86_400 - 899), 0.0), None, "not after it");
        assert_eq!(next_round(&redelivery(0, 900_000), raised, raised, 0.0), None, "a horizon of 0: no further rounds");
    }

    #[test]
    fn a_claim_outlasts_a_round_whose_jitter_draws_the_longest_waits() {
        let config = AlertsConfig { retries: 5, retry_base_ms: 100, retry_max_ms: 250, timeout_ms: 1_000, ..AlertsConfig::default() };
        for _ in 0..200 {
            let waited: Duration = retry_delays(&config).sum();
            assert!(waited + Duration::from_millis(config.timeout_ms * 6) <= config.worst_delivery(), "{waited:?}");
        }
        assert_eq!(config.worst_delivery(), Duration::from_millis(6 * 1_000 + 5 * 500));
    }

    proptest! {
        #[test]
        fn a_round_never_waits_past_the_cap_nor_starts_after_the_horizon(
            age_secs in 0i64..200_000, jitter in 0.0f64..1.0, max_ms in 1_000u64..5_000_000, horizon_secs in 0u64..200_000,
        ) {
            let config = redelivery(horizon_secs, max_ms);
            let raised = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
            let failed = raised + chrono::Duration::seconds(age_secs);
            if let Some(next) = next_round(&config, raised, failed, jitter) {
                prop_assert!(next > failed);
                prop_assert!(next - failed <= chrono::Duration::milliseconds(max_ms as i64));
                prop_assert!(next <= raised + chrono::Duration::seconds(horizon_secs as i64));
            }
        }

        /// Alerts of one category and subject raised in order: the first
        /// one leads, every other one within its leader's window is
        /// suppressed, the first one at or after the window's end leads the
        /// next window and reports how many were suppressed before it, and
        /// a leader delivered again (after a crash) still leads.
        #[test]
        fn within_one_window_exactly_the_first_alert_leads(offsets in proptest::collection::vec(0i64..1_000, 1..50), window in 1i64..2_000) {
            let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
            let mut sorted = offsets.clone();
            sorted.sort();
            let mut current: Option<Window> = None;
            let mut leads = Vec::new();
            for (i, offset) in sorted.iter().enumerate() {
                let id = Uuid::from_u128(i as u128 + 1);
                let at = t0 + chrono::Duration::seconds(*offset);
                match throttle(current.as_ref(), id, at) {
                    Throttle::Lead { repeats_before } => {
                        leads.push((i, repeats_before));
                        current = Some(Window { leader: id, until: at + chrono::Duration::seconds(window), suppressed: 0 });
                        prop_assert_eq!(throttle(current.as_ref(), id, at), Throttle::Lead { repeats_before: 0 }, "a leader delivered again leads again");
                    }
                    Throttle::Suppress => current.as_mut().unwrap().suppressed += 1,
                }
            }
            // The leaders, worked out independently of `throttle`.
            let mut expected = Vec::new();
            let mut until: Option<i64> = None;
            for (i, offset) in sorted.iter().enumerate() {
                if until.is_none_or(|end| *offset >= end) {
                    let repeats = expected.last().map_or(0, |(previous, _): &(usize, i64)| (i - previous - 1) as i64);
                    expected.push((i, repeats));
                    until = Some(offset + window);
                }
            }
            prop_assert_eq!(&leads, &expected);
            if sorted.last().unwrap() - sorted.first().unwrap() < window {
                prop_assert_eq!(leads, vec![(0, 0)], "within one window exactly the first alert leads");
            }
        }
    }
}
