//! Poison events (issue 13, defect 1): a handler that panics or hangs on one
//! event costs that event only, never the processor, its batch or intake.
//! The handlers are made to panic or hang by test-only failpoints armed for
//! one event key; the other events are coaching milestones with an unknown
//! name, which the handler records as `invalid` without a chain or wallet.

use std::time::Duration;

use entity::alerts;
use havend::webhooks::Partner;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::on_both_backends;
use crate::support::*;

fn milestone(id: &str) -> String {
    format!(r#"{{"id":"{id}","user_id":"u_{id}","milestone":"no_such_milestone"}}"#)
}

async fn status_of(daemon: &TestDaemon, id: &str) -> Option<String> {
    daemon.event(Partner::Tribe, &format!("coaching-milestone:{id}")).await.map(|e| e.status)
}

async fn has_status(daemon: &TestDaemon, id: &str, status: &str) -> bool {
    eventually(Duration::from_secs(30), || async { status_of(daemon, id).await.as_deref() == Some(status) }).await
}

async fn dead_letter_alerts(daemon: &TestDaemon) -> u64 {
    alerts::Entity::find().filter(alerts::Column::Category.eq("webhook_dead_letter")).count(&daemon.db).await.unwrap()
}

async fn a_handler_that_panics_fails_only_its_event_and_dead_letters_it(backend: Backend) {
    // Both backends' variants share the key, so arming it twice is harmless.
    fail::cfg("rewards::handler_panics", "return(coaching-milestone:poison_panic)").unwrap();
    let daemon = TestDaemon::start_with(backend, |config| {
        config.processor.max_attempts = 2;
        config.processor.retry_base_ms = 50;
        config.processor.poll_interval_ms = 50;
    })
    .await;
    assert_eq!(daemon.deliver(Partner::Tribe, Some("coaching-milestone"), &milestone("poison_panic")).await.status, 200);
    assert_eq!(daemon.deliver(Partner::Tribe, Some("coaching-milestone"), &milestone("beside_panic")).await.status, 200);
    assert!(has_status(&daemon, "poison_panic", "dead_letter").await, "the panicking event is dead-lettered");
    let poison = daemon.event(Partner::Tribe, "coaching-milestone:poison_panic").await.unwrap();
    assert_eq!(poison.attempts, 2, "each panic counted as a deterministic failure");
    assert!(poison.last_error.as_deref().is_some_and(|e| e.contains("handler panicked")), "{:?}", poison.last_error);
    assert_eq!(dead_letter_alerts(&daemon).await, 1);
    assert!(has_status(&daemon, "beside_panic", "invalid").await, "the event beside it was handled");
    // The processor lives on: an event sent after the dead letter is handled too.
    assert_eq!(daemon.deliver(Partner::Tribe, Some("coaching-milestone"), &milestone("after_panic")).await.status, 200);
    assert!(has_status(&daemon, "after_panic", "invalid").await);
    daemon.stop().await;
}

/// A processor that hangs on an event loses its claim at every lease; the
/// claims that lapse without an outcome count, and after `max_attempts` of
/// them the event is dead-lettered instead of being claimed forever.
/// PostgreSQL only: SQLite's single writer makes the other processors wait
/// for the hung transaction instead of taking the event over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_claims_keep_lapsing_is_dead_lettered_with_an_alert() {
    let key = "coaching-milestone:poison_hang";
    fail::cfg("rewards::handler_stall", &format!("return({key}=2500)")).unwrap();
    let daemon = TestDaemon::start_with(Backend::Postgres, |config| {
        config.processor.workers = 3;
        config.processor.batch = 1;
        config.processor.lease_secs = 1;
        config.processor.max_attempts = 2;
        config.processor.poll_interval_ms = 50;
    })
    .await;
    assert_eq!(daemon.deliver(Partner::Tribe, Some("coaching-milestone"), &milestone("poison_hang")).await.status, 200);
    assert_eq!(daemon.deliver(Partner::Tribe, Some("coaching-milestone"), &milestone("beside_hang")).await.status, 200);
    assert!(has_status(&daemon, "beside_hang", "invalid").await, "the event beside it was handled");
    assert!(has_status(&daemon, "poison_hang", "dead_letter").await, "the hanging event is dead-lettered");
    assert!(havend::hooks::stalls_applied(key) >= 2, "the handler hung at least twice");
    let poison = daemon.event(Partner::Tribe, key).await.unwrap();
    assert!(poison.lapses >= 2, "{}", poison.lapses);
    assert!(poison.last_error.as_deref().is_some_and(|e| e.contains("lapsed")), "{:?}", poison.last_error);
    assert_eq!(dead_letter_alerts(&daemon).await, 1);
    daemon.stop().await;
}

on_both_backends!(a_handler_that_panics_fails_only_its_event_and_dead_letters_it);
