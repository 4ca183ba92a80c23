//! Prometheus metrics: their names, the process-wide recorder that
//! `GET /metrics` renders, and a sampler for the gauges read from the database.
//!
//! The recorder has no listener of its own: havend's hyper listener serves it.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QuerySelect};
use tokio::sync::watch;
use tracing::{debug, warn};

/// Counter: webhook requests by `partner` and `outcome` (`stored`,
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

/// Histogram buckets of [`WEBHOOK_ACK_SECONDS`]: a group commit answers in
/// milliseconds; the top buckets catch a database that stalls.
pub const ACK_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// How often the database gauges are sampled (two `GROUP BY` queries).
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(15);

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
}

/// The metrics in the Prometheus text format.
pub fn render() -> String {
    install().render()
}

/// Samples the database gauges every [`SAMPLE_INTERVAL`] until `shutdown`.
pub async fn sample(db: DatabaseConnection, mut shutdown: watch::Receiver<bool>) {
    let mut seen = (BTreeSet::new(), BTreeSet::new());
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        // Without a scrape the recorder never drains its histograms; upkeep bounds them.
        install().run_upkeep();
        let inbox = counts::<entity::webhook_events::Entity, _>(&db, entity::webhook_events::Column::Status).await;
        let intents = counts::<entity::transactions::Entity, _>(&db, entity::transactions::Column::Status).await;
        match (inbox, intents) {
            (Ok(inbox), Ok(intents)) => {
                publish(INBOX_EVENTS, inbox, &mut seen.0);
                publish(INTENTS, intents, &mut seen.1);
            }
            (Err(error), _) | (_, Err(error)) => debug!(%error, "Metrics sample skipped"),
        }
    }
}

async fn counts<E: EntityTrait, C: ColumnTrait>(db: &DatabaseConnection, status: C) -> Result<Vec<(String, i64)>, DbErr> {
    E::find().select_only().column(status).column_as(status.count(), "count").group_by(status).into_tuple().all(db).await
}

/// Sets a gauge per status; a status seen before and now absent drops to 0.
fn publish(name: &'static str, counts: Vec<(String, i64)>, seen: &mut BTreeSet<String>) {
    let present: BTreeSet<String> = counts.iter().map(|(status, _)| status.clone()).collect();
    for status in seen.difference(&present) {
        ::metrics::gauge!(name, "status" => status.clone()).set(0.0);
    }
    for (status, count) in counts {
        ::metrics::gauge!(name, "status" => status).set(count as f64);
    }
    seen.extend(present);
}
