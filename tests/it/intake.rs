//! Durable intake: deduplication, concurrency and group commit.

use std::sync::Arc;

use havend::webhooks::Partner;

use crate::on_both_backends;
use crate::support::*;

async fn duplicate_event_is_acknowledged_and_stored_once(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let body = booking_created("bk_dup");
    let first = daemon.deliver(Partner::Aurora, Some("booking-created"), &body).await;
    let second = daemon.deliver(Partner::Aurora, Some("booking-created"), &body).await;
    assert_eq!((first.status, first.json["duplicate"].as_bool()), (200, Some(false)));
    assert_eq!((second.status, second.json["duplicate"].as_bool()), (200, Some(true)));
    assert_eq!(second.json["partner_event_id"], "booking-created:bk_dup");
    assert_eq!(daemon.stored().await, 1);
    daemon.stop().await;
}

async fn hundred_concurrent_deliveries_of_one_event_store_one_row(backend: Backend) {
    let daemon = Arc::new(TestDaemon::start(backend).await);
    let body = booking_created("bk_storm");
    let deliveries = (0..100).map(|_| {
        let daemon = daemon.clone();
        let body = body.clone();
        tokio::spawn(async move { daemon.deliver(Partner::Aurora, Some("booking-created"), &body).await })
    });
    let answers = futures_join(deliveries).await;
    assert!(answers.iter().all(|a| a.status == 200), "every delivery acknowledged");
    let fresh = answers.iter().filter(|a| a.json["duplicate"] == false).count();
    assert_eq!(fresh, 1, "exactly one delivery stored the event");
    assert_eq!(daemon.stored().await, 1);
}

async fn concurrent_distinct_events_are_all_stored(backend: Backend) {
    let daemon = Arc::new(TestDaemon::start(backend).await);
    let deliveries = (0..300).map(|i| {
        let daemon = daemon.clone();
        tokio::spawn(async move {
            daemon.deliver(Partner::Aurora, Some("booking-created"), &booking_created(&format!("bk_many_{i}"))).await
        })
    });
    let answers = futures_join(deliveries).await;
    assert!(answers.iter().all(|a| a.status == 200 && a.json["duplicate"] == false));
    assert_eq!(daemon.stored().await, 300);
}

async fn without_group_commit_every_event_is_still_stored_once(backend: Backend) {
    let daemon = Arc::new(TestDaemon::start_with(backend, |c| c.intake.group_commit = false).await);
    let deliveries = (0..60).map(|i| {
        let daemon = daemon.clone();
        // Every event twice, concurrently: the unique key still decides.
        tokio::spawn(async move {
            daemon.deliver(Partner::Aurora, Some("booking-created"), &booking_created(&format!("bk_solo_{}", i / 2))).await
        })
    });
    let answers = futures_join(deliveries).await;
    assert!(answers.iter().all(|a| a.status == 200));
    assert_eq!(answers.iter().filter(|a| a.json["duplicate"] == false).count(), 30);
    assert_eq!(daemon.stored().await, 30);
}

async fn two_attendees_of_one_tribe_event_are_two_events(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    for attendee in ["m_1", "m_2"] {
        let body = format!(r#"{{"id":"tev_9","attendeeId":"{attendee}","type":"workshop","attended":true}}"#);
        let answer = daemon.deliver(Partner::Tribe, Some("event-attendance"), &body).await;
        assert_eq!((answer.status, answer.json["duplicate"].as_bool()), (200, Some(false)));
    }
    assert!(daemon.event(Partner::Tribe, "event-attendance:tev_9:m_1").await.is_some());
    assert!(daemon.event(Partner::Tribe, "event-attendance:tev_9:m_2").await.is_some());
    daemon.stop().await;
}

async fn cancellation_of_a_created_booking_is_a_new_event(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let created = daemon.deliver(Partner::Aurora, Some("booking-created"), &booking_created("bk_77")).await;
    let cancelled = daemon.deliver(Partner::Aurora, Some("booking-cancelled"), r#"{"id":"bk_77"}"#).await;
    assert_eq!(created.json["duplicate"], false);
    assert_eq!(cancelled.json["duplicate"], false, "{:?}", cancelled.json);
    assert!(daemon.event(Partner::Aurora, "booking-cancelled:bk_77").await.is_some());
    assert_eq!(daemon.stored().await, 2);
    daemon.stop().await;
}

async fn request_id_is_honoured_and_echoed(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let body = booking_created("bk_rid");
    let mut headers = sign(Partner::Aurora, &body, now());
    headers.push(("x-request-id".into(), "partner-req.42_a".into()));
    let answer = daemon.post("/webhooks/aurora/booking-created", &headers, body).await;
    assert_eq!(answer.headers["x-request-id"], "partner-req.42_a");
    let row = daemon.event(Partner::Aurora, "booking-created:bk_rid").await.unwrap();
    assert_eq!(row.request_id, "partner-req.42_a");
    let health = daemon.get("/health").await;
    assert_eq!((health.status, health.json["database"].as_str()), (200, Some("ok")));
    assert!(uuid::Uuid::parse_str(health.headers["x-request-id"].to_str().unwrap()).is_ok());
    daemon.stop().await;
}

/// Issue 6, defect 8: more rows than one statement's bind parameters allow
/// (13 per row: over 65,535 on PostgreSQL, 32,766 on SQLite) are all stored,
/// and a second insert of them finds every one a duplicate.
async fn insert_of_more_rows_than_bind_parameters_allow_stores_every_row(backend: Backend) {
    use havend::intake::store::{self, NewEvent, STATUS_IGNORED, STATUS_PENDING};
    let daemon = TestDaemon::start(backend).await;
    let rows = 65_535 / 13 + 1_000;
    let events: Vec<NewEvent> = (0..rows)
        .map(|i| NewEvent {
            id: uuid::Uuid::now_v7(),
            partner: Partner::Aurora,
            partner_event_id: format!("booking-created:bk_wide_{i}"),
            event_type: "booking-created".into(),
            status: if i % 2 == 0 { STATUS_PENDING } else { STATUS_IGNORED },
            last_error: (i % 2 == 1).then(|| "test".to_owned()),
            body: bytes::Bytes::from(booking_created(&format!("bk_wide_{i}"))),
            headers: "{}".into(),
            source_ip: (i % 3 == 0).then(|| "192.0.2.1".to_owned()),
            request_id: format!("req-{i}"),
            received_at: chrono::Utc::now(),
        })
        .collect();
    let refs: Vec<&NewEvent> = events.iter().collect();
    let stored = store::insert_new(&daemon.db, &refs).await.expect("a wide insert succeeds");
    assert_eq!(stored.len(), rows);
    assert_eq!(daemon.stored().await, rows as u64);
    assert!(store::insert_new(&daemon.db, &refs).await.unwrap().is_empty(), "all duplicates the second time");

    // NULLs and the due time survive the array insert.
    let pending = daemon.event(Partner::Aurora, "booking-created:bk_wide_0").await.unwrap();
    assert_eq!((pending.last_error, pending.source_ip.as_deref()), (None, Some("192.0.2.1")));
    assert!(pending.next_attempt_at.is_some());
    let ignored = daemon.event(Partner::Aurora, "booking-created:bk_wide_1").await.unwrap();
    assert_eq!((ignored.last_error.as_deref(), ignored.source_ip, ignored.next_attempt_at), (Some("test"), None, None));
    assert_eq!(ignored.body, booking_created("bk_wide_1").as_bytes());
    daemon.stop().await;
}

async fn futures_join<T: Send + 'static>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        results.push(task.await.unwrap());
    }
    results
}

/// SPEC: purging raw bodies after the retention period keeps each row's
/// deduplication key, so a partner redelivering a purged event still gets
/// `duplicate: true` and nothing is stored or rewarded twice.
async fn purging_raw_bodies_keeps_the_deduplication_keys(backend: Backend) {
    use entity::webhook_events;
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let daemon = crate::token::ledger_daemon(backend, |_| {}).await;
    let body = r#"{"id":"bk_purge","guest_id":"g_purge","total_price":"10","nights":1}"#;
    assert_eq!(daemon.deliver(Partner::Aurora, Some("booking-created"), body).await.json["duplicate"], false);
    let key = "booking-created:bk_purge";
    assert!(eventually(std::time::Duration::from_secs(20), || async { daemon.event(Partner::Aurora, key).await.is_some_and(|e| e.status == "processed") }).await);
    // Past the retention period.
    let long_ago = chrono::Utc::now() - chrono::Duration::days(i64::from(daemon.daemon().config().load().schedule.body_retention_days) + 1);
    webhook_events::Entity::update_many()
        .col_expr(webhook_events::Column::ReceivedAt, Expr::value(long_ago))
        .col_expr(webhook_events::Column::ProcessedAt, Expr::value(Some(long_ago)))
        .filter(webhook_events::Column::PartnerEventId.eq(key))
        .exec(&daemon.db)
        .await
        .unwrap();
    let config = daemon.daemon().config().load_full();
    let report = havend::schedule::run_job(havend::schedule::JobKind::PurgeBodies, daemon.daemon().db(), &config, None).await.unwrap();
    assert_eq!(report["purged"], 1, "{report}");
    let purged = daemon.event(Partner::Aurora, key).await.unwrap();
    assert!(purged.body.is_empty() && purged.body_purged_at.is_some(), "the body is gone");

    let again = daemon.deliver(Partner::Aurora, Some("booking-created"), body).await;
    assert_eq!((again.status, again.json["duplicate"].as_bool()), (200, Some(true)), "{:?}", again.json);
    assert_eq!(daemon.stored().await, 1, "nothing stored again");
    assert_eq!(entity::transactions::Entity::find().count(&daemon.db).await.unwrap(), 1, "rewarded once");
    daemon.stop().await;
}

on_both_backends!(
    purging_raw_bodies_keeps_the_deduplication_keys,
    duplicate_event_is_acknowledged_and_stored_once,
    hundred_concurrent_deliveries_of_one_event_store_one_row,
    concurrent_distinct_events_are_all_stored,
    without_group_commit_every_event_is_still_stored_once,
    two_attendees_of_one_tribe_event_are_two_events,
    cancellation_of_a_created_booking_is_a_new_event,
    request_id_is_honoured_and_echoed,
    one_row_the_database_refuses_fails_alone_and_its_batch_is_stored,
    insert_of_more_rows_than_bind_parameters_allow_stores_every_row,
);

/// The listener speaks HTTP/2 (prior knowledge, as a proxy in front of havend would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_delivery_is_stored() {
    let daemon = TestDaemon::start(Backend::Sqlite).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let body = booking_created("bk_h2");
    let mut request = http::Request::post(format!("http://{}/webhooks/aurora/booking-created", daemon.addr));
    for (name, value) in sign(Partner::Aurora, &body, now()) {
        request = request.header(name, value);
    }
    let response = client
        .request(request.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap())
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert!(daemon.event(Partner::Aurora, "booking-created:bk_h2").await.is_some());
    daemon.stop().await;
}

async fn one_row_the_database_refuses_fails_alone_and_its_batch_is_stored(backend: Backend) {
    // The failpoint fails any insert holding a partner event id that ends in
    // "poison"; no other test uses such an id.
    fail::cfg("intake::poisoned_row", "return").unwrap();
    let daemon = Arc::new(
        TestDaemon::start_with(backend, |c| {
            // All eleven requests share one batch: it is written when full.
            c.intake.max_batch = 11;
            c.intake.flush_delay_us = 100_000;
        })
        .await,
    );
    let ids: Vec<String> = (0..10).map(|i| format!("bk_batch_{i}")).chain(["bk_poison".to_owned()]).collect();
    let deliveries = ids.iter().cloned().map(|id| {
        let daemon = daemon.clone();
        tokio::spawn(async move { (id.clone(), daemon.deliver(Partner::Aurora, Some("booking-created"), &booking_created(&id)).await) })
    });
    for (id, answer) in futures_join(deliveries).await {
        let expected = if id == "bk_poison" { 503 } else { 200 };
        assert_eq!(answer.status, expected, "{id}: {:?}", answer.json);
    }
    assert_eq!(daemon.stored().await, 10, "the other rows of the batch were stored one by one");
    assert!(daemon.event(Partner::Aurora, "booking-created:bk_poison").await.is_none());
}
