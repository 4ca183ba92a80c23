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

/// A handler that hangs fails its event once its budget (half the lease) is
/// spent: even the one processor of a default daemon is never stuck on it.
async fn a_handler_that_hangs_fails_its_event_once_its_budget_is_spent_even_on_a_lone_processor(backend: Backend) {
    let key = "coaching-milestone:poison_budget";
    fail::cfg("rewards::handler_stall", &format!("return({key}=5000)")).unwrap();
    let daemon = TestDaemon::start_with(backend, |config| {
        config.processor.workers = 1;
        config.processor.lease_secs = 1;
        config.processor.max_attempts = 2;
        config.processor.retry_base_ms = 50;
        config.processor.poll_interval_ms = 50;
    })
    .await;
    assert_eq!(daemon.deliver(Partner::Tribe, Some("coaching-milestone"), &milestone("poison_budget")).await.status, 200);
    assert_eq!(daemon.deliver(Partner::Tribe, Some("coaching-milestone"), &milestone("beside_budget")).await.status, 200);
    assert!(has_status(&daemon, "poison_budget", "dead_letter").await, "the hanging event is dead-lettered");
    let poison = daemon.event(Partner::Tribe, key).await.unwrap();
    assert_eq!(poison.attempts, 2, "each spent budget counted");
    assert!(poison.last_error.as_deref().is_some_and(|e| e.contains("did not finish within 500 ms")), "{:?}", poison.last_error);
    assert!(has_status(&daemon, "beside_budget", "invalid").await, "the lone processor went on with the next event");
    daemon.stop().await;
}

/// A processor that hangs (or crashes) outside the handler's budget loses
/// its claim; the next processor takes the lapsed event over alone and
/// counts a lapse, and after `max_attempts` of them the event is
/// dead-lettered instead of being claimed forever. The events that waited
/// behind it in its batch are taken over alone too, processed, and end with
/// no lapse counted. PostgreSQL only: SQLite's single writer makes the other
/// processors wait for the hung transaction instead of taking events over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_claims_keep_lapsing_is_dead_lettered_and_its_batch_mates_are_not() {
    let key = "coaching-milestone:poison_hang";
    fail::cfg("processor::stall_before_commit", &format!("return({key}=2500)")).unwrap();
    let daemon = TestDaemon::start_with(Backend::Postgres, |config| {
        config.processor.workers = 3;
        config.processor.batch = 8;
        config.processor.lease_secs = 1;
        config.processor.max_attempts = 2;
        config.processor.poll_interval_ms = 50;
    })
    .await;
    let innocents: Vec<String> = (0..5).map(|i| format!("mate_{i}")).collect();
    // The poison first: its batch-mates wait behind it while it hangs.
    assert_eq!(daemon.deliver(Partner::Tribe, Some("coaching-milestone"), &milestone("poison_hang")).await.status, 200);
    for id in &innocents {
        assert_eq!(daemon.deliver(Partner::Tribe, Some("coaching-milestone"), &milestone(id)).await.status, 200);
    }
    assert!(has_status(&daemon, "poison_hang", "dead_letter").await, "the hanging event is dead-lettered");
    assert!(havend::hooks::stalls_applied(key) >= 2, "the processor hung on it at least twice");
    let poison = daemon.event(Partner::Tribe, key).await.unwrap();
    assert!(poison.lapses >= 2, "{}", poison.lapses);
    assert!(poison.last_error.as_deref().is_some_and(|e| e.contains("lapsed")), "{:?}", poison.last_error);
    for id in &innocents {
        assert!(has_status(&daemon, id, "invalid").await, "{id} was handled");
        let event = daemon.event(Partner::Tribe, &format!("coaching-milestone:{id}")).await.unwrap();
        assert_eq!(event.lapses, 0, "{id}: an outcome clears the lapses it was charged for waiting");
    }
    assert_eq!(dead_letter_alerts(&daemon).await, 1, "only the poison is dead-lettered");
    daemon.stop().await;
}

on_both_backends!(
    a_handler_that_panics_fails_only_its_event_and_dead_letters_it,
    a_handler_that_hangs_fails_its_event_once_its_budget_is_spent_even_on_a_lone_processor,
);
