//! `GET /api/v1/stream`: transaction and ticketing status changes as
//! server-sent events, replayed from the database after a reconnect, in id
//! order even when ids commit out of order.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use entity::{stream_events, ticketing_status, transactions, users};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionTrait};
use serde_json::Value;

use crate::on_both_backends;
use crate::support::{Backend, TOKEN_KEY, TestDaemon, assert_error_shape};

/// How long a test waits for an event that should come.
const WAIT: Duration = Duration::from_secs(10);

/// One server-sent event.
#[derive(Debug, Clone)]
struct Event {
    id: i64,
    name: String,
    data: Value,
}

/// A test SSE client reading the response body frame by frame.
struct Sse {
    body: Incoming,
    buffer: String,
}

impl Sse {
    async fn open(daemon: &TestDaemon, query: &str, last_event_id: Option<i64>) -> Sse {
        let (status, sse) = Self::try_open(daemon, query, last_event_id).await;
        assert_eq!(status, 200);
        let mut sse = sse.unwrap();
        // The first frame says the stream is set up (its starting point fixed).
        let connected = sse.read_block(WAIT).await.expect("the connected comment");
        assert!(connected.starts_with(": connected"), "{connected}");
        sse
    }

    async fn try_open(daemon: &TestDaemon, query: &str, last_event_id: Option<i64>) -> (u16, Option<Sse>) {
        let mut request = http::Request::get(format!("http://{}/api/v1/stream{query}", daemon.addr)).header("authorization", format!("Bearer {TOKEN_KEY}"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = daemon.client.request(request.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        if status != 200 {
            return (status, None);
        }
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        (status, Some(Sse { body: response.into_body(), buffer: String::new() }))
    }

    /// The next block (up to a blank line), or None when the stream ended or `timeout` passed.
    async fn read_block(&mut self, timeout: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                return Some(block);
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await.ok()??.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// The next event (comments skipped), or None within `timeout`.
    async fn next(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let block = self.read_block(left).await?;
            let (mut id, mut name, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).ok();
                }
            }
            if let (Some(id), Some(name), Some(data)) = (id, name, data) {
                return Some(Event { id, name, data });
            }
        }
    }

    /// Events until one has `status` for transaction `id` (that one last).
    async fn until(&mut self, id: uuid::Uuid, status: &str) -> Vec<Event> {
        let mut seen = Vec::new();
        while let Some(event) = self.next(WAIT).await {
            let done = event.data["transaction_id"] == id.to_string() && event.data["status"] == status;
            seen.push(event);
            if done {
                return seen;
            }
        }
        panic!("no {status} event for {id}; saw {seen:?}");
    }
}

async fn insert_user(db: &impl ConnectionTrait, reference: &str) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    users::ActiveModel {
        id: Set(id),
        external_ref: Set(reference.into()),
        wallet_id: Set(uuid::Uuid::new_v4()),
        address: Set(format!("0x{}", "1".repeat(40))),
        hot_wallet_id: Set(uuid::Uuid::new_v4()),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await
    .unwrap();
    id
}

/// A queued mint of 12.5 HNV for `user`, as an API mint writes it.
async fn insert_intent(db: &impl ConnectionTrait, user: uuid::Uuid) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    let now = Utc::now();
    transactions::ActiveModel {
        id: Set(id),
        intent_id: Set(format!("0x{}", id.simple()).repeat(2)[..66].to_owned()),
        source: Set(format!("test:{id}")),
        user_id: Set(user),
        hot_wallet_id: Set(uuid::Uuid::new_v4()),
        kind: Set("mint".into()),
        amount: Set("12500000000000000000".into()),
        reason: Set("test".into()),
        status: Set("queued".into()),
        generation: Set(0),
        nonce: Set(None),
        reverses: Set(None),
        tx_hash: Set(None),
        block_number: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        event_id: Set(None),
        rules_hash: Set(None),
        limit_day: Set(None),
        shortfall: Set(None),
        seq: sea_orm::ActiveValue::NotSet,
    }
    .insert(db)
    .await
    .unwrap();
    id
}

async fn set_status(db: &impl ConnectionTrait, id: uuid::Uuid, status: &str, tx_hash: Option<&str>) {
    transactions::Entity::update_many()
        .col_expr(transactions::Column::Status, sea_orm::sea_query::Expr::value(status))
        .col_expr(transactions::Column::TxHash, sea_orm::sea_query::Expr::value(tx_hash.map(str::to_owned)))
        .col_expr(transactions::Column::UpdatedAt, sea_orm::sea_query::Expr::value(Utc::now()))
        .filter(transactions::Column::Id.eq(id))
        .exec(db)
        .await
        .unwrap();
}

fn statuses(events: &[Event], id: uuid::Uuid) -> Vec<String> {
    events.iter().filter(|e| e.data["transaction_id"] == id.to_string()).map(|e| e.data["status"].as_str().unwrap().to_owned()).collect()
}

async fn a_client_sees_its_transaction_confirmed(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let mut sse = Sse::open(&daemon, "", None).await;
    let user = insert_user(&daemon.db, "aurora:guest_s1").await;
    let intent = insert_intent(&daemon.db, user).await;
    set_status(&daemon.db, intent, "signed", None).await;
    let hash = format!("0x{}", "ab".repeat(32));
    set_status(&daemon.db, intent, "confirmed", Some(&hash)).await;
    let events = sse.until(intent, "confirmed").await;
    assert_eq!(statuses(&events, intent), ["queued", "signed", "confirmed"]);
    assert!(events.windows(2).all(|w| w[0].id < w[1].id), "ids increase: {events:?}");
    let confirmed = events.last().unwrap();
    assert_eq!(confirmed.name, "transaction");
    assert_eq!(confirmed.data["kind"], "mint");
    assert_eq!(confirmed.data["amount"], "12.5");
    assert_eq!(confirmed.data["tx_hash"], hash.as_str());
    assert_eq!(confirmed.data["user"], "aurora:guest_s1");

    // Ticketing status changes come on the same stream; an unchanged status is not repeated.
    let row = ticketing_status::ActiveModel {
        event_id: Set("evt_42".into()),
        status: Set("active".into()),
        partner_status: Set("LIVE".into()),
        updated_at: Set(Utc::now()),
    };
    row.insert(&daemon.db).await.unwrap();
    ticketing_status::Entity::update_many()
        .col_expr(ticketing_status::Column::PartnerStatus, sea_orm::sea_query::Expr::value("PUBLISHED"))
        .filter(ticketing_status::Column::EventId.eq("evt_42"))
        .exec(&daemon.db)
        .await
        .unwrap();
    ticketing_status::Entity::update_many()
        .col_expr(ticketing_status::Column::Status, sea_orm::sea_query::Expr::value("inactive"))
        .filter(ticketing_status::Column::EventId.eq("evt_42"))
        .exec(&daemon.db)
        .await
        .unwrap();
    let first = sse.next(WAIT).await.unwrap();
    let second = sse.next(WAIT).await.unwrap();
    assert_eq!((first.name.as_str(), &first.data["event_id"], &first.data["status"]), ("ticketing", &Value::from("evt_42"), &Value::from("active")));
    assert_eq!(second.data["status"], "inactive");
    assert!(second.data["updated_at"].is_string());
    daemon.stop().await;
}

async fn a_reconnect_with_last_event_id_receives_the_missed_events(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let user = insert_user(&daemon.db, "aurora:guest_s2").await;
    let mut sse = Sse::open(&daemon, "", None).await;
    let intent = insert_intent(&daemon.db, user).await;
    let queued = sse.until(intent, "queued").await.pop().unwrap();
    drop(sse);
    // Missed while disconnected.
    set_status(&daemon.db, intent, "signed", None).await;
    set_status(&daemon.db, intent, "broadcast", None).await;
    set_status(&daemon.db, intent, "confirmed", None).await;
    let mut sse = Sse::open(&daemon, "", Some(queued.id)).await;
    let events = sse.until(intent, "confirmed").await;
    assert_eq!(statuses(&events, intent), ["signed", "broadcast", "confirmed"]);
    assert!(events[0].id > queued.id);
    // From the database, not memory: a fresh daemon on the same data would
    // answer the same; here the journal rows are what was replayed.
    let journaled = stream_events::Entity::find().filter(stream_events::Column::Id.gt(queued.id)).all(&daemon.db).await.unwrap();
    assert_eq!(journaled.iter().map(|r| r.id).collect::<Vec<_>>(), events.iter().map(|e| e.id).collect::<Vec<_>>());
    daemon.stop().await;
}

async fn the_user_filter_keeps_only_that_users_transactions(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let mine = insert_user(&daemon.db, "aurora:guest_mine").await;
    let theirs = insert_user(&daemon.db, "aurora:guest_theirs").await;
    let mut sse = Sse::open(&daemon, "?user=aurora%3Aguest_mine", None).await;
    let other = insert_intent(&daemon.db, theirs).await;
    set_status(&daemon.db, other, "confirmed", None).await;
    let own = insert_intent(&daemon.db, mine).await;
    set_status(&daemon.db, own, "confirmed", None).await;
    let events = sse.until(own, "confirmed").await;
    assert_eq!(statuses(&events, own), ["queued", "confirmed"]);
    assert!(events.iter().all(|e| e.data["user"] == "aurora:guest_mine"), "{events:?}");
    daemon.stop().await;
}

async fn streams_over_the_limit_are_refused_and_shutdown_ends_open_streams(backend: Backend) {
    let daemon = TestDaemon::start_with(backend, |config| config.stream.max_streams = 1).await;
    let mut sse = Sse::open(&daemon, "", None).await;
    let request = http::Request::get(format!("http://{}/api/v1/stream", daemon.addr))
        .header("authorization", format!("Bearer {TOKEN_KEY}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = daemon.send(request).await;
    assert_eq!((answer.status, assert_error_shape(&answer)), (503, "TOO_MANY_STREAMS".to_owned()));
    let unauthenticated = daemon.get("/api/v1/stream").await;
    assert_eq!(unauthenticated.status, 401);
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), daemon.stop()).await.expect("shutdown is not held up by an open stream");
    assert!(started.elapsed() < Duration::from_secs(5), "the stream ended at shutdown rather than at the grace period's end: {:?}", started.elapsed());
    assert!(sse.next(Duration::from_secs(2)).await.is_none(), "the stream ended");
}

/// PostgreSQL only: SQLite has one writer at a time, so its ids commit in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_that_commits_after_a_later_one_is_not_skipped() {
    let daemon = TestDaemon::start(Backend::Postgres).await;
    let user = insert_user(&daemon.db, "aurora:guest_s4").await;
    let first = insert_intent(&daemon.db, user).await;
    let second = insert_intent(&daemon.db, user).await;
    let mut sse = Sse::open(&daemon, "", None).await;
    // A new client is sent the last moments' changes too: the two inserts.
    sse.until(second, "queued").await;

    let early = daemon.db.begin().await.unwrap();
    set_status(&early, first, "signed", None).await; // takes the lower id
    let late = daemon.db.begin().await.unwrap();
    set_status(&late, second, "signed", None).await; // takes the higher id
    late.commit().await.unwrap();
    // The higher id is visible, the lower one not yet: nothing may be sent.
    assert!(sse.next(Duration::from_millis(1_200)).await.is_none(), "the later id must wait for the earlier one");
    early.commit().await.unwrap();
    let a = sse.next(WAIT).await.expect("the earlier id arrives");
    let b = sse.next(WAIT).await.expect("then the later one");
    assert_eq!((a.data["transaction_id"].as_str(), b.data["transaction_id"].as_str()), (Some(first.to_string().as_str()), Some(second.to_string().as_str())));
    assert_eq!(b.id, a.id + 1);
    daemon.stop().await;
}

/// PostgreSQL only: a change whose journal id was taken before the client
/// connected, but that commits after, reaches a client without `Last-Event-ID`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_uncommitted_when_a_client_connects_is_still_sent() {
    let daemon = TestDaemon::start(Backend::Postgres).await;
    let user = insert_user(&daemon.db, "aurora:guest_s5").await;
    let intent = insert_intent(&daemon.db, user).await;
    let pending = daemon.db.begin().await.unwrap();
    set_status(&pending, intent, "signed", None).await;
    let later = insert_intent(&daemon.db, user).await; // a higher id, visible at once
    let mut sse = Sse::open(&daemon, "", None).await;
    pending.commit().await.unwrap();
    // The later id waits behind the pending one's gap, which fills in time.
    let events = sse.until(later, "queued").await;
    assert_eq!(statuses(&events, intent), ["queued", "signed"], "{events:?}");
    assert!(events.windows(2).all(|w| w[0].id < w[1].id), "in id order: {events:?}");
    daemon.stop().await;
}

async fn the_cleanup_job_removes_old_journal_rows(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let user = insert_user(&daemon.db, "aurora:guest_s5").await;
    insert_intent(&daemon.db, user).await;
    insert_intent(&daemon.db, user).await;
    let oldest = stream_events::Entity::find().one(&daemon.db).await.unwrap().unwrap();
    stream_events::Entity::update_many()
        .col_expr(stream_events::Column::CreatedAt, sea_orm::sea_query::Expr::value(Utc::now() - chrono::Duration::hours(25)))
        .filter(stream_events::Column::Id.eq(oldest.id))
        .exec(&daemon.db)
        .await
        .unwrap();
    let cleaned = havend::schedule::cleanup(&daemon.db, &havend::config::Config::default(), Utc::now()).await.unwrap();
    assert_eq!(cleaned.stream_events, 1);
    let left = stream_events::Entity::find().all(&daemon.db).await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].id > oldest.id);
    daemon.stop().await;
}

on_both_backends!(
    a_client_sees_its_transaction_confirmed,
    a_reconnect_with_last_event_id_receives_the_missed_events,
    the_user_filter_keeps_only_that_users_transactions,
    streams_over_the_limit_are_refused_and_shutdown_ends_open_streams,
    the_cleanup_job_removes_old_journal_rows,
);
