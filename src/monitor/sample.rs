//! What is in the ledger at a glance, read with one `GROUP BY` per table:
//! the admin API's transaction summary and the database gauges of
//! `/metrics` share these queries.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{transactions, webhook_events};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;
use serde_json::json;
use tracing::debug;
use uuid::Uuid;

use crate::ledger::{BROADCAST, CANCELLED, CONFIRMED, FAILED, HELD, QUEUED, SIGNED};
use crate::telemetry::metrics::{INBOX_EVENTS, INTENTS, WALLET_BACKLOG, WALLET_NEXT_NONCE, install};

/// How often the database gauges are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(15);

/// Inbox statuses published from the first sample on (at 0 when empty), so
/// dashboards show zero rather than no data.
const INBOX_STATUSES: &[&str] = &[
    crate::rewards::inbox::PENDING,
    crate::rewards::inbox::PROCESSED,
    crate::rewards::inbox::DEAD_LETTER,
    crate::intake::store::STATUS_IGNORED,
    crate::rewards::inbox::INVALID,
];
/// Intent statuses, each reported (at 0 when none) by the summary and the gauges.
const INTENT_STATUSES: &[&str] = &[QUEUED, HELD, SIGNED, BROADCAST, CONFIRMED, FAILED, CANCELLED];

/// In-flight work at a glance, for operators and the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Intents by status.
    pub by_status: HashMap<String, u64>,
    /// The oldest intent in flight and since when.
    pub oldest_pending: Option<(Uuid, DateTime<Utc>)>,
    /// Per hot wallet: its address, status, next nonce and queued backlog.
    pub wallets: Vec<serde_json::Value>,
}

/// The summary, from the database.
pub async fn summary(db: &impl ConnectionTrait) -> Result<Summary, DbErr> {
    let counts: HashMap<String, i64> = intent_counts(db).await?.into_iter().collect();
    let by_status = INTENT_STATUSES.iter().map(|status| ((*status).to_owned(), counts.get(*status).copied().unwrap_or(0).max(0) as u64)).collect();
    let oldest = transactions::Entity::find()
        .filter(transactions::Column::Status.is_in([SIGNED, BROADCAST]))
        .order_by_asc(transactions::Column::UpdatedAt)
        .one(db)
        .await?
        .map(|t| (t.id, t.updated_at));
    let backlog = backlog_by_wallet(db).await?;
    let wallets = crate::custody::list_hot(db)
        .await?
        .into_iter()
        .map(|wallet| {
            let backlog = backlog.get(&wallet.id).copied().unwrap_or(0);
            json!({ "id": wallet.id, "address": wallet.address, "status": wallet.status, "next_nonce": wallet.next_nonce, "backlog": backlog })
        })
        .collect();
    Ok(Summary { by_status, oldest_pending: oldest, wallets })
}

/// Intents by status, one row per status present.
async fn intent_counts(db: &impl ConnectionTrait) -> Result<Vec<(String, i64)>, DbErr> {
    counts::<transactions::Entity, _>(db, transactions::Column::Status).await
}

/// Queued intents per hot wallet, wallets without any left out.
async fn backlog_by_wallet(db: &impl ConnectionTrait) -> Result<HashMap<Uuid, i64>, DbErr> {
    let rows: Vec<(Uuid, i64)> = transactions::Entity::find()
        .select_only()
        .column(transactions::Column::HotWalletId)
        .column_as(transactions::Column::Id.count(), "count")
        .filter(transactions::Column::Status.eq(QUEUED))
        .group_by(transactions::Column::HotWalletId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

async fn counts<E: EntityTrait, C: ColumnTrait>(db: &impl ConnectionTrait, status: C) -> Result<Vec<(String, i64)>, DbErr> {
    E::find().select_only().column(status).column_as(status.count(), "count").group_by(status).into_tuple().all(db).await
}

/// The gauge labels published so far: inbox statuses, intent statuses and
/// wallet addresses. One that disappears from a sample drops to 0.
#[derive(Debug)]
pub struct Published {
    inbox: BTreeSet<String>,
    intents: BTreeSet<String>,
    wallets: BTreeSet<String>,
}

impl Default for Published {
    fn default() -> Self {
        let known = |statuses: &[&str]| statuses.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<String>>();
        Published { inbox: known(INBOX_STATUSES), intents: known(INTENT_STATUSES), wallets: BTreeSet::new() }
    }
}

/// Samples the database gauges once.
pub async fn sample(db: &impl ConnectionTrait, published: &mut Published) {
    // Without a scrape the recorder never drains its histograms; upkeep bounds them.
    install().run_upkeep();
    let inbox = counts::<webhook_events::Entity, _>(db, webhook_events::Column::Status).await;
    let intents = intent_counts(db).await;
    match (inbox, intents) {
        (Ok(inbox), Ok(intents)) => {
            publish(INBOX_EVENTS, inbox, &mut published.inbox);
            publish(INTENTS, intents, &mut published.intents);
        }
        (Err(error), _) | (_, Err(error)) => debug!(%error, "Metrics sample skipped"),
    }
    match hot_wallets(db).await {
        Ok(wallets) => publish_wallets(wallets, &mut published.wallets),
        Err(error) => debug!(%error, "Wallet metrics sample skipped"),
    }
}

/// Each hot wallet's address, next nonce and queued backlog.
async fn hot_wallets(db: &impl ConnectionTrait) -> Result<Vec<(String, i64, i64)>, DbErr> {
    let backlog = backlog_by_wallet(db).await?;
    let hot = crate::custody::list_hot(db).await?;
    Ok(hot.into_iter().map(|w| (w.address, w.next_nonce, backlog.get(&w.id).copied().unwrap_or(0))).collect())
}

/// Sets the per-wallet gauges; a wallet seen before and gone (deleted) drops to 0.
fn publish_wallets(wallets: Vec<(String, i64, i64)>, seen: &mut BTreeSet<String>) {
    let present: BTreeSet<String> = wallets.iter().map(|(address, _, _)| address.clone()).collect();
    for address in seen.difference(&present) {
        ::metrics::gauge!(WALLET_BACKLOG, "wallet" => address.clone()).set(0.0);
    }
    for (address, next_nonce, backlog) in wallets {
        ::metrics::gauge!(WALLET_NEXT_NONCE, "wallet" => address.clone()).set(next_nonce as f64);
        ::metrics::gauge!(WALLET_BACKLOG, "wallet" => address).set(backlog as f64);
    }
    seen.extend(present);
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
