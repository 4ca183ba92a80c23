//! Prometheus metrics: their names and the process-wide recorder that
//! `GET /metrics` renders. The gauges read from the database are sampled by
//! the monitor (`crate::monitor::sample`), so this module imports no domain module.
//!
//! The recorder has no listener of its own: havend's hyper listener serves it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::warn;

/// Counter: webhook requests by `partner`, `event` (a known event name, or
/// `unknown`: paths are attacker-chosen) and `outcome` (`stored`,
/// `duplicate`, or the error code in lowercase: `invalid_signature`, …).
pub const WEBHOOKS_RECEIVED: &str = "havend_webhooks_received_total";
/// Histogram: seconds from a webhook request's routing to its answer, by `partner`.
pub const WEBHOOK_ACK_SECONDS: &str = "havend_webhook_ack_seconds";
/// Counter: config reloads by `trigger` (`file`, `sighup`, `request`) and
/// `outcome` (`applied`, `unchanged`, `rejected`).
pub const CONFIG_RELOADS: &str = "havend_config_reloads_total";
/// Gauge: inbox events by `status`, sampled.
pub const INBOX_EVENTS: &str = "havend_inbox_events";
/// Gauge: reward intents by `status`, sampled.
pub const INTENTS: &str = "havend_intents";
/// Gauge: each hot wallet's next nonce to assign, by `wallet` (address), sampled.
pub const WALLET_NEXT_NONCE: &str = "havend_wallet_next_nonce";
/// Gauge: intents queued on each hot wallet, by `wallet` (address), sampled.
pub const WALLET_BACKLOG: &str = "havend_wallet_backlog";
/// Gauge: a circuit breaker's state by `breaker`: 0 closed, 1 half-open, 2 open.
pub const BREAKER_STATE: &str = "havend_breaker_state";
/// Counter: alert delivery results by `channel` (`none` for a decision
/// about the whole alert) and `outcome` (`delivered`, `retrying`,
/// `failed`, `throttled`, `unrouted`), as written to `alert_logs`.
pub const ALERT_DELIVERIES: &str = "havend_alert_deliveries_total";
/// Gauge: the latest block's base fee in wei, as the transaction monitor last saw it.
pub const GAS_BASE_FEE: &str = "havend_gas_base_fee_wei";
/// Gauge: 1 while a gas spike holds new mints, else 0 (the monitor's decision).
pub const GAS_HOLD: &str = "havend_gas_hold";

/// Every metric havend exports, for the dashboard's test and for readers.
pub const ALL: &[&str] =
    &[WEBHOOKS_RECEIVED, WEBHOOK_ACK_SECONDS, CONFIG_RELOADS, INBOX_EVENTS, INTENTS, WALLET_NEXT_NONCE, WALLET_BACKLOG, BREAKER_STATE, ALERT_DELIVERIES, GAS_BASE_FEE, GAS_HOLD];

/// Histogram buckets of [`WEBHOOK_ACK_SECONDS`]: a group commit answers in
/// milliseconds; the top buckets catch a database that stalls.
pub const ACK_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once (several daemons in one test
/// process share it) and returns the handle that renders it.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(WEBHOOK_ACK_SECONDS.into()), ACK_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if ::metrics::set_global_recorder(recorder).is_err() {
            warn!("Another metrics recorder is installed; /metrics will be empty");
        }
        describe();
        handle
    })
}

fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(WEBHOOKS_RECEIVED, "Webhook requests by partner and outcome");
    describe_histogram!(WEBHOOK_ACK_SECONDS, Unit::Seconds, "Time from routing a webhook request to answering it");
    describe_counter!(CONFIG_RELOADS, "Config reloads by trigger and outcome");
    describe_gauge!(INBOX_EVENTS, "Inbox events by status (sampled)");
    describe_gauge!(INTENTS, "Reward intents by status (sampled)");
    describe_gauge!(WALLET_NEXT_NONCE, "Next nonce each hot wallet assigns (sampled)");
    describe_gauge!(WALLET_BACKLOG, "Intents queued on each hot wallet (sampled)");
    describe_gauge!(BREAKER_STATE, "Circuit breaker state: 0 closed, 1 half-open, 2 open");
    describe_counter!(ALERT_DELIVERIES, "Alert delivery results by channel and outcome");
    describe_gauge!(GAS_BASE_FEE, "Latest base fee seen by the transaction monitor, wei");
    describe_gauge!(GAS_HOLD, "1 while a gas spike holds new mints");
}

/// The metrics in the Prometheus text format.
pub fn render() -> String {
    install().render()
}

/// Counts one alert delivery result (called where it is written to `alert_logs`).
pub fn alert_delivery(channel: Option<&str>, outcome: &str) {
    ::metrics::counter!(ALERT_DELIVERIES, "channel" => channel.unwrap_or("none").to_owned(), "outcome" => outcome.to_owned()).increment(1);
}

