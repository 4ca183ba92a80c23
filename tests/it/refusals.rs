//! Database refusals: a write the database refuses deterministically (a
//! constraint, a value out of range) counts toward the event's dead letter,
//! a passing one (a serialization failure) retries without counting and is
//! alerted by name once it lasts; the staking job pays every other stake
//! when one stake's rows are refused.
//!
//! The refusals are made by the test in its own database (a CHECK
//! constraint or trigger on PostgreSQL, a trigger on SQLite): intake's
//! bounds refuse every input known to make the database refuse a write.

use std::time::Duration;

use entity::{alerts, transactions, webhook_events};
use havend::webhooks::Partner;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};

use crate::on_both_backends;
use crate::support::chain::TEST_MASTER_KEY;
use crate::support::{Backend, TestDaemon, eventually};

/// Makes the database refuse, deterministically, every row of `table`
/// whose `column` satisfies `predicate` (`= 'x'`, `LIKE 'x%'`): a CHECK
/// constraint (SQLSTATE 23514) on PostgreSQL, an aborting trigger
/// (SQLITE_CONSTRAINT_TRIGGER) on SQLite.
async fn refuse_rows(db: &DatabaseConnection, backend: Backend, table: &str, column: &str, predicate: &str) {
    let sql = match backend {
        Backend::Postgres => format!("ALTER TABLE {table} ADD CONSTRAINT test_refusal CHECK (NOT ({column} {predicate}))"),
        Backend::Sqlite => format!(
            "CREATE TRIGGER test_refusal BEFORE INSERT ON {table} WHEN NEW.{column} {predicate} BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        ),
    };
    db.execute_unprepared(&sql).await.unwrap();
}

fn booking(id: &str, guest: &str) -> String {
    format!(r#"{{"id":"{id}","guest_id":"{guest}","total_price":"100","nights":1}}"#)
}

async fn alerts_naming(db: &DatabaseConnection, category: &str, key: &str, value: &str) -> usize {
    let rows = alerts::Entity::find().filter(alerts::Column::Category.eq(category)).all(db).await.unwrap();
    rows.iter()
        .filter(|a| serde_json::from_str::<serde_json::Value>(&a.details).is_ok_and(|d| d[key].as_str() == Some(value) || d[key].to_string().contains(value)))
        .count()
}

async fn an_event_whose_write_the_database_refuses_is_dead_lettered_after_max_attempts_with_an_alert(backend: Backend) {
    let daemon = TestDaemon::start_with_active_wallet(backend, |config| {
        config.processor.max_attempts = 3;
        config.processor.retry_base_ms = 50;
        config.processor.retry_max_secs = 1;
    })
    .await;
    refuse_rows(&daemon.db, backend, "aurora_bookings", "guest_ref", "= 'aurora:refused'").await;
    assert_eq!(daemon.deliver(Partner::Aurora, Some("booking-created"), &booking("bk_refused", "refused")).await.status, 200);
    assert_eq!(daemon.deliver(Partner::Aurora, Some("booking-created"), &booking("bk_fine", "welcome")).await.status, 200);
    let key = "booking-created:bk_refused";
    let dead = eventually(Duration::from_secs(30), || async { daemon.event(Partner::Aurora, key).await.is_some_and(|e| e.status == "dead_letter") }).await;
    let event = daemon.event(Partner::Aurora, key).await.unwrap();
    assert!(dead, "a refused write counts toward the dead letter instead of retrying forever: {event:?}");
    assert_eq!(event.attempts, 3, "dead-lettered at max_attempts");
    assert!(event.last_error.as_deref().is_some_and(|e| e.starts_with("database:")), "{:?}", event.last_error);
    assert_eq!(alerts_naming(&daemon.db, "webhook_dead_letter", "event", &event.id.to_string()).await, 1);
    let fine = daemon.event(Partner::Aurora, "booking-created:bk_fine").await.unwrap();
    assert_eq!(fine.status, "processed", "the other event is not held up: {fine:?}");
    daemon.stop().await;
}

/// PostgreSQL only: SQLite cannot be made to answer BUSY on demand. A
/// serialization failure (SQLSTATE 40001, raised by a trigger that counts
/// its calls in a sequence, which no rollback undoes) is retried without
/// counting; while other events keep succeeding, the event is alerted by
/// name once it has been failing for `transient_alert_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transiently_refused_event_retries_without_counting_and_is_alerted_by_name_while_others_succeed() {
    let daemon = TestDaemon::start_with_active_wallet(Backend::Postgres, |config| {
        config.processor.max_attempts = 2;
        config.processor.transient_retry_ms = 100;
        config.processor.transient_alert_secs = 1;
    })
    .await;
    for sql in [
        "CREATE SEQUENCE test_contention_hits",
        "CREATE FUNCTION test_contend() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         PERFORM nextval('test_contention_hits'); \
         RAISE EXCEPTION 'could not serialize access (test)' USING ERRCODE = '40001'; END $$",
        "CREATE TRIGGER test_contend BEFORE INSERT ON aurora_bookings FOR EACH ROW \
         WHEN (NEW.guest_ref = 'aurora:contended') EXECUTE FUNCTION test_contend()",
    ] {
        daemon.db.execute_unprepared(sql).await.unwrap();
    }
    let hits = || async {
        let row = daemon.db.query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, "SELECT last_value, is_called FROM test_contention_hits")).await.unwrap().unwrap();
        if row.try_get::<bool>("", "is_called").unwrap() { row.try_get::<i64>("", "last_value").unwrap() } else { 0 }
    };
    assert_eq!(daemon.deliver(Partner::Aurora, Some("booking-created"), &booking("bk_contended", "contended")).await.status, 200);
    let key = "booking-created:bk_contended";
    let id = daemon.event(Partner::Aurora, key).await.expect("stored before the 200").id.to_string();
    // Other events keep succeeding all along; the stalled one must be named anyway.
    let mut sent = 0;
    let alerted = eventually(Duration::from_secs(30), || {
        sent += 1;
        let body = booking(&format!("bk_flow_{sent}"), &format!("flow_{sent}"));
        let (daemon, id) = (&daemon, &id);
        async move {
            assert_eq!(daemon.deliver(Partner::Aurora, Some("booking-created"), &body).await.status, 200);
            alerts_naming(&daemon.db, "processing_stalled", "event", id).await == 1
        }
    })
    .await;
    assert!(alerted, "an event failing transiently for transient_alert_secs is alerted by name");
    let processed = webhook_events::Entity::find().filter(webhook_events::Column::Status.eq("processed")).count(&daemon.db).await.unwrap();
    assert!(processed >= 2, "other events succeeded meanwhile ({processed})");
    assert!(hits().await > 2, "tried more often than max_attempts");
    let event = daemon.event(Partner::Aurora, key).await.unwrap();
    assert_eq!((event.status.as_str(), event.attempts), ("pending", 0), "a transient failure never counts toward the dead letter");
    assert!(event.last_error.as_deref().is_some_and(|e| e.contains("could not serialize")), "{:?}", event.last_error);

    // Once the condition passes, the event is processed.
    daemon.db.execute_unprepared("DROP TRIGGER test_contend ON aurora_bookings").await.unwrap();
    let done = eventually(Duration::from_secs(20), || async { daemon.event(Partner::Aurora, key).await.is_some_and(|e| e.status == "processed") }).await;
    assert!(done, "processed once the database accepts it");
    daemon.stop().await;
}

async fn one_stake_the_database_refuses_is_alerted_and_every_other_stake_is_paid(backend: Backend) {
    let daemon = TestDaemon::start_with_active_wallet(backend, |_| {}).await;
    let started = (chrono::Utc::now() - chrono::Duration::days(22)).to_rfc3339();
    // Named so that the refused stake comes first whichever order the job reads them in.
    for stake in ["st_a_refused", "st_b_fine", "st_c_fine"] {
        let body = format!(r#"{{"id":"{stake}","user_id":"{stake}_user","amount":"365","started_at":"{started}"}}"#);
        assert_eq!(daemon.deliver(Partner::Tribe, Some("staking-started"), &body).await.status, 200);
    }
    let recorded = eventually(Duration::from_secs(20), || async { entity::staking_records::Entity::find().count(&daemon.db).await.unwrap() == 3 }).await;
    assert!(recorded, "the three stakes are recorded");
    refuse_rows(&daemon.db, backend, "transactions", "source", "LIKE 'staking:st_a_refused:%'").await;

    let config = daemon.daemon().config().load_full();
    let keys = havend::custody::MasterKeys::parse(TEST_MASTER_KEY).unwrap();
    let report = havend::schedule::run_job(havend::schedule::JobKind::StakingRewards, daemon.daemon().db(), &config, Some(&keys)).await;
    let report = report.expect("one refused stake does not fail the job");
    assert_eq!(report["failed"].as_u64(), Some(1), "{report}");
    let paid = |stake: &'static str| {
        let db = &daemon.db;
        async move { transactions::Entity::find().filter(transactions::Column::Source.starts_with(format!("staking:{stake}:"))).count(db).await.unwrap() }
    };
    assert_eq!(paid("st_a_refused").await, 0, "the refused stake's payouts are rolled back");
    let weeks = paid("st_b_fine").await;
    assert!((2..=3).contains(&weeks), "22 days hold two or three completed weeks: {weeks}");
    assert_eq!(paid("st_c_fine").await, weeks, "every other stake is paid");
    assert_eq!(alerts_naming(&daemon.db, "staking_failed", "stakes", "st_a_refused").await, 1, "the refused stake is alerted by name");
    daemon.stop().await;
}

on_both_backends!(
    an_event_whose_write_the_database_refuses_is_dead_lettered_after_max_attempts_with_an_alert,
    one_stake_the_database_refuses_is_alerted_and_every_other_stake_is_paid,
);
