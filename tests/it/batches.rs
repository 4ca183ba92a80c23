//! Set-based processing against the reference, one event at a time with
//! the handlers: the same inbox, processed both ways on the same backend,
//! must end in the same rows.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use entity::{aurora_bookings, mint_counters, staking_records, transactions, tribe_events, tribe_rewards, users, webhook_events};
use havend::intake::{Delivery, NewEvent};
use havend::webhooks::Partner;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};

use crate::on_both_backends;
use crate::support::{Backend, TestDaemon, TestDatabase, eventually};

/// Daemons that process one event at a time (the failpoint is
/// process-wide: both backends' variants arm the same list).
const ONE_AT_A_TIME: &str = "return(single-postgres,single-sqlite)";

/// A mix of every partner's events: a review before its booking, a booking
/// and its cancellation, a cancellation before its booking (a tombstone),
/// invalid events, a delivery of the same event twice, an unreadable stored
/// body, new and returning users, and enough bookings per guest to pass the
/// daily limit in the middle of a batch.
fn inbox() -> Vec<NewEvent> {
    let mut sent: Vec<(Partner, Option<&str>, String)> = vec![
        (Partner::Aurora, Some("review-submitted"), r#"{"id":"rv_1","booking_id":"bk_1","guest_id":"ga","rating":5}"#.into()),
        (Partner::Aurora, Some("booking-created"), r#"{"id":"bk_1","guest_id":"ga","total_price":"100","nights":1}"#.into()),
        (Partner::Aurora, Some("booking-created"), r#"{"id":"bk_1","guest_id":"ga","total_price":"100","nights":1}"#.into()),
        (Partner::Aurora, Some("booking-created"), r#"{"id":"bk_2","guest_id":"gb","total_price":"50","nights":2}"#.into()),
        (Partner::Aurora, Some("booking-cancelled"), r#"{"id":"bk_2"}"#.into()),
        (Partner::Aurora, Some("booking-cancelled"), r#"{"id":"bk_3"}"#.into()),
        (Partner::Aurora, Some("booking-created"), r#"{"id":"bk_3","guest_id":"ga","total_price":"10","nights":1}"#.into()),
        (Partner::Aurora, Some("booking-completed"), r#"{"id":"bk_1"}"#.into()),
        (Partner::Tribe, Some("event-attendance"), r#"{"id":"tev_1","attendee_id":"m1","type":"workshop","attended":true}"#.into()),
        (Partner::Tribe, Some("event-attendance"), r#"{"id":"tev_2","attendee_id":"m1","type":"yoga","attended":false}"#.into()),
        (Partner::Tribe, Some("contribution"), r#"{"id":"c1","user_id":"m1","quality_score":3.0}"#.into()),
        (Partner::Tribe, Some("coaching-milestone"), r#"{"id":"cm1","user_id":"m1","milestone":"no-such-tier"}"#.into()),
        (Partner::Tribe, Some("referral-success"), r#"{"id":"ref1","referrer_id":"m2","tier":"silver"}"#.into()),
        (Partner::Tribe, Some("staking-started"), r#"{"id":"st1","user_id":"m1","amount":"1000"}"#.into()),
        (Partner::HiEvents, Some("event-status-changed"), r#"{"event_id":"he_1","status":"LIVE","updated_at":"2026-11-01T12:00:00Z"}"#.into()),
    ];
    let payment = |id: &str, amount: u64, currency: &str| {
        format!(r#"{{"id":"{id}","type":"payment_intent.succeeded","data":{{"object":{{"amount_received":{amount},"currency":"{currency}","metadata":{{"haven_user_id":"aurora:ga"}}}}}}}}"#)
    };
    sent.push((Partner::Stripe, None, payment("evt_1", 5_000, "cad")));
    sent.push((Partner::Stripe, None, payment("evt_2", 700, "xxx")));
    for i in 0..40 {
        sent.push((Partner::Aurora, Some("booking-created"), format!(r#"{{"id":"bk_l{i}","guest_id":"g{}","total_price":"60","nights":1}}"#, i % 4)));
        if i % 9 == 0 {
            sent.push((Partner::Tribe, Some("contribution"), format!(r#"{{"id":"c_l{i}","user_id":"m{}","quality_score":2.5}}"#, i % 3)));
        }
    }
    sent.push((Partner::Aurora, Some("review-submitted"), r#"{"id":"rv_2","booking_id":"bk_l5","guest_id":"g1","rating":5}"#.into()));
    let base = chrono::Utc::now();
    let mut events: Vec<NewEvent> = sent
        .into_iter()
        .enumerate()
        .map(|(n, (partner, event, body))| {
            let at = base + chrono::Duration::milliseconds(n as i64);
            let body = Bytes::from(body);
            let parsed = havend::webhooks::payload::parse(partner, event, &body, at).unwrap_or_else(|e| panic!("{partner}/{event:?}: {e}"));
            NewEvent::new(partner, parsed, body, Delivery { headers: "{}".into(), source_ip: None, request_id: format!("req_{n}"), received_at: at })
        })
        .collect();
    // A stored body that no longer reads: invalid, in the middle of a batch.
    events[20].body = Bytes::from_static(b"{not json");
    events
}

/// An intent: source, user, kind, amount, status, last error, the source of the mint it reverses.
type IntentRow = (String, String, String, String, String, Option<String>, Option<String>);
/// A booking: id, guest, total price, status, the source of its mint.
type BookingRow = (String, Option<String>, Option<String>, String, Option<String>);

/// Everything processing wrote, without ids or clocks.
#[derive(Debug, PartialEq)]
struct Rows {
    events: Vec<(String, String, i32, Option<String>)>,
    intents: Vec<IntentRow>,
    bookings: Vec<BookingRow>,
    counters: Vec<(String, String, String)>,
    tribe: (u64, u64, u64),
    /// Alerts by category, but for the held mints' ones.
    alerts: BTreeMap<String, usize>,
    /// The sources of the mints the `mint_held` alerts list: a batch alerts
    /// a limit's held mints together, one at a time each alone, and either
    /// way every held mint is alerted once.
    held_alerted: Vec<String>,
    /// Custodial wallets and their `create` audit rows.
    wallets: (u64, u64),
}

async fn rows(db: &DatabaseConnection) -> Rows {
    let mut events: Vec<_> = webhook_events::Entity::find().all(db).await.unwrap().into_iter().map(|e| (e.partner_event_id, e.status, e.attempts, e.last_error)).collect();
    events.sort();
    let users: BTreeMap<_, _> = users::Entity::find().all(db).await.unwrap().into_iter().map(|u| (u.id, u.external_ref)).collect();
    let intents = transactions::Entity::find().all(db).await.unwrap();
    let source_of: BTreeMap<_, _> = intents.iter().map(|t| (t.id, t.source.clone())).collect();
    let mut intents: Vec<_> = intents
        .iter()
        .map(|t| (t.source.clone(), users[&t.user_id].clone(), t.kind.clone(), t.amount.clone(), t.status.clone(), t.last_error.clone(), t.reverses.map(|id| source_of[&id].clone())))
        .collect();
    intents.sort();
    let mut bookings: Vec<_> = aurora_bookings::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.booking_id, b.guest_ref, b.total_price, b.status, b.mint_intent.map(|id| source_of[&id].clone())))
        .collect();
    bookings.sort();
    let mut counters: Vec<_> = mint_counters::Entity::find().all(db).await.unwrap().into_iter().map(|c| (c.scope, c.day, c.used)).collect();
    counters.sort();
    let tribe = (tribe_events::Entity::find().count(db).await.unwrap(), tribe_rewards::Entity::find().count(db).await.unwrap(), staking_records::Entity::find().count(db).await.unwrap());
    let (mut alerts, mut held_alerted) = (BTreeMap::new(), Vec::new());
    for alert in entity::alerts::Entity::find().all(db).await.unwrap() {
        if alert.category == "mint_held" {
            let details: serde_json::Value = serde_json::from_str(&alert.details).unwrap();
            held_alerted.extend(details["mints"].as_array().unwrap().iter().map(|mint| mint["source"].as_str().unwrap().to_owned()));
        } else {
            *alerts.entry(alert.category).or_default() += 1;
        }
    }
    held_alerted.sort();
    let user_wallets = entity::wallets::Entity::find().filter(entity::wallets::Column::Kind.eq(havend::custody::USER)).count(db).await.unwrap();
    let created = entity::wallet_audit_logs::Entity::find().filter(entity::wallet_audit_logs::Column::Action.eq("create")).count(db).await.unwrap();
    Rows { events, intents, bookings, counters, tribe, alerts, held_alerted, wallets: (user_wallets, created) }
}

/// The inbox processed by a daemon named `name` (batches of 64), once no
/// event is pending any more.
async fn processed_by(backend: Backend, name: &'static str) -> Rows {
    let daemon = TestDaemon::start_with_active_wallet(backend, move |config| {
        config.daemon_name = name.into();
        config.processor.batch = 64;
        config.processor.retry_base_ms = 100;
        config.rewards.limits.per_user_per_day = "300".parse().unwrap();
        config.rewards.limits.total_per_day = "2500".parse().unwrap();
    })
    .await;
    let events = inbox();
    // One insert: the processors see the whole inbox at once.
    havend::intake::store::insert_new(&daemon.db, &events.iter().collect::<Vec<_>>()).await.unwrap();
    let pending = || async { webhook_events::Entity::find().filter(webhook_events::Column::Status.eq("pending")).count(&daemon.db).await.unwrap() == 0 };
    assert!(eventually(Duration::from_secs(60), pending).await, "{name}: every event settles");
    let rows = rows(&daemon.db).await;
    daemon.stop().await;
    rows
}

fn batches_written() -> u64 {
    let text = havend::telemetry::metrics::render();
    let line = text.lines().find(|line| line.starts_with(&format!("{}_count{{outcome=\"committed\"}}", havend::rewards::batch::BATCH_WRITE_SECONDS)));
    line.and_then(|line| line.rsplit(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

async fn a_batch_ends_every_event_as_one_at_a_time_would(backend: Backend) {
    havend::telemetry::metrics::install();
    fail::cfg("processor::one_at_a_time", ONE_AT_A_TIME).unwrap();
    let (single, batched) = match backend {
        Backend::Postgres => ("single-postgres", "batched-postgres"),
        Backend::Sqlite => ("single-sqlite", "batched-sqlite"),
    };
    let reference = processed_by(backend, single).await;
    let before = batches_written();
    let batched_rows = processed_by(backend, batched).await;
    assert!(batches_written() > before, "the batched daemon committed batches");
    assert!(reference.intents.iter().any(|intent| intent.4 == "held"), "the inbox passes a daily limit: {:?}", reference.intents);
    assert_eq!(reference.held_alerted.len(), reference.intents.iter().filter(|intent| intent.4 == "held").count(), "every held mint is alerted");
    assert!(reference.events.iter().any(|event| event.1 == "invalid"), "the inbox has invalid events");
    assert_eq!(batched_rows, reference);
}

on_both_backends!(a_batch_ends_every_event_as_one_at_a_time_would, a_batch_sum_decided_from_a_stale_counter_never_overwrites_it);

/// A batch's counter sums are decided from values read before its
/// transaction. Writes of other writers in between (an API mint, another
/// processor) must never be overwritten nor let the sum pass the limit:
/// whatever each write answers, the counter ends at exactly the sum of the
/// writes it accepted, within the limit (SQLite compares with the value the
/// batch read; PostgreSQL adds atomically).
async fn a_batch_sum_decided_from_a_stale_counter_never_overwrites_it(backend: Backend) {
    use alloy::primitives::U256;
    use havend::rewards::limits::{self, Bounds, CounterAdd};

    let database = TestDatabase::create(backend).await;
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    havend::db::migrate_up(&db).await.unwrap();
    let bounds = Bounds { per_event: U256::MAX, per_user: U256::MAX, total: U256::from(1_000u64) };
    let key = ("total".to_owned(), "2026-12-03".to_owned());
    let mut accepted = U256::ZERO;
    // (what the batch read, what it adds): the first creates the counter,
    // the others come from snapshots taken before the writes ahead of them.
    for (old, add) in [(None, 100u64), (None, 950), (Some(0u64), 50), (Some(100), 50)] {
        let adds = BTreeMap::from([(key.clone(), CounterAdd { old: old.map(U256::from), add: U256::from(add) })]);
        if limits::add_batch(&db, &bounds, &adds).await.unwrap() {
            accepted += U256::from(add);
        }
    }
    let counter = mint_counters::Entity::find().one(&db).await.unwrap().unwrap();
    assert_eq!(counter.used, accepted.to_string(), "the counter holds exactly what was accepted");
    assert!(accepted <= bounds.total, "{accepted} accepted");
    assert!(accepted >= U256::from(100u64), "the first write counts");
}

