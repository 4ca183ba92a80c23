//! Config hot reload: file edits and SIGHUP apply without a restart; a bad
//! edit is refused, alerted, and the last good config keeps serving.

use std::time::{Duration, Instant};

use havend::webhooks::{Partner, Scheme};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::on_both_backends;
use crate::support::*;

const OLD: &str = "reload-secret-old";
const NEW: &str = "reload-secret-new";

fn partners(secret: &str) -> String {
    format!("[partners.aurora]\nsecrets = [\"{secret}\"]\n")
}

/// Delivers a fresh booking signed with `secret`; returns the status.
async fn deliver_signed(daemon: &TestDaemon, secret: &str) -> u16 {
    let body = booking_created(&format!("bk_{}", uuid::Uuid::new_v4().simple()));
    let headers = sign_with(Partner::Aurora, Scheme::HavenHmac, secret, &body, now());
    daemon.post("/webhooks/aurora/booking-created", &headers, body).await.status
}

async fn an_edited_secret_is_accepted_within_two_seconds_and_the_removed_one_refused(backend: Backend) {
    let (daemon, dir) = TestDaemon::start_with_config_dir(backend, "", &partners(OLD)).await;
    assert_eq!(deliver_signed(&daemon, OLD).await, 200);
    assert_eq!(deliver_signed(&daemon, NEW).await, 401);

    let written = Instant::now();
    replace_file(&dir.join("partners.toml"), &partners(NEW));
    let mut accepted_after = None;
    while written.elapsed() < Duration::from_secs(2) {
        if deliver_signed(&daemon, NEW).await == 200 {
            accepted_after = Some(written.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let accepted_after = accepted_after.expect("the new secret is accepted within 2 s of the write");
    eprintln!("reload: new secret accepted {accepted_after:?} after the write ({backend:?})");
    assert_eq!(deliver_signed(&daemon, OLD).await, 401, "the removed secret is refused");

    let report = daemon.daemon().last_reload().expect("a reload ran");
    assert_eq!((report.trigger, report.outcome), ("file", "applied"));
    assert_eq!(report.changed, ["partners.aurora.secrets"]);
    daemon.stop().await;
}

async fn invalid_toml_keeps_the_last_good_config_and_raises_config_rejected(backend: Backend) {
    let (daemon, dir) = TestDaemon::start_with_config_dir(backend, "", &partners(OLD)).await;
    std::fs::write(dir.join("partners.toml"), format!("[partners.aurora\nsecrets = [\"{NEW}\"]\n")).unwrap();
    let rejected = eventually(Duration::from_secs(2), || async {
        entity::alerts::Entity::find()
            .filter(entity::alerts::Column::Category.eq("config_rejected"))
            .one(&daemon.db)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    assert!(rejected, "a config_rejected alert is stored");
    assert_eq!(deliver_signed(&daemon, OLD).await, 200, "the last good config keeps serving");
    assert_eq!(deliver_signed(&daemon, NEW).await, 401);

    let report = daemon.daemon().last_reload().unwrap();
    assert_eq!(report.outcome, "rejected");
    let error = report.error.as_deref().unwrap();
    assert!(error.contains("partners.toml"), "{error}");
    assert!(!error.contains(NEW), "the error does not quote the line holding a secret: {error}");
    daemon.stop().await;
}

/// A reload that edits the listen address and the worker count keeps both
/// at their running values and says so, while the hot edit beside them applies.
async fn restart_only_edits_are_kept_and_reported(backend: Backend) {
    let (daemon, dir) = TestDaemon::start_with_config_dir(backend, "", &partners(OLD)).await;
    let running = daemon.daemon().config().load_full();
    let text = std::fs::read_to_string(dir.join("havend.toml")).unwrap();
    let edited = format!("{text}[server]\nlisten = \"127.0.0.1:1\"\n[processor]\nworkers = 3\nbatch = 9\n");
    std::fs::write(dir.join("havend.toml"), edited).unwrap();
    let report = daemon.daemon().reload().await.expect("the config actor answers");
    assert_eq!(report.outcome, "applied");
    assert_eq!(report.needs_restart, ["processor.workers", "server.listen"]);
    let now = daemon.daemon().config().load_full();
    assert_eq!(now.processor.batch, 9, "the hot setting applies");
    assert_eq!((now.processor.workers, now.server.listen), (running.processor.workers, running.server.listen));
    daemon.stop().await;
}

on_both_backends!(
    an_edited_secret_is_accepted_within_two_seconds_and_the_removed_one_refused,
    invalid_toml_keeps_the_last_good_config_and_raises_config_rejected,
    restart_only_edits_are_kept_and_reported,
);
