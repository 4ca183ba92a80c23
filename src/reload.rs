//! The reload actor: reloads the configuration when a file in the config
//! directory changes (debounced) or on SIGHUP, and carries out the pure
//! [`plan_reload`]: swap the snapshot, or keep it and raise `config_rejected`.
//!
//! Every reader takes `config.load()` once per request or batch, so a swap
//! applies partner secrets, reward rules and processor settings at once, and a
//! request in flight finishes under the snapshot it already holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set};
use serde_json::json;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::reload::{ReloadPlan, ReloadReport, plan_reload};
use crate::config::{ConfigHandle, ConfigSource};
use crate::alert::{self, Severity};
use crate::telemetry::metrics as names;

/// File events are gathered until none has arrived for this long, so an
/// editor's write-rename-chmod sequence (or several files saved together)
/// causes one reload.
pub const RELOAD_QUIET_PERIOD: Duration = Duration::from_millis(250);
/// How long [`ReloadHandle::reload`] waits for the actor.
pub const RELOAD_TIMEOUT_MS: u64 = 10_000;
/// `system_flags` rows named this plus a daemon name hold that daemon's reward rules hash.
pub const RULES_HASH_FLAG_PREFIX: &str = "rules_hash:";

/// Where the config actor and its last result are published, for the admin
/// API and tests.
#[derive(Default)]
pub struct ReloadHandle {
    /// The running config actor (none while it restarts or without reload).
    actor: ArcSwapOption<ActorRef<ConfigMsg>>,
    /// The last reload's result (none before the first reload).
    last: ArcSwapOption<ReloadReport>,
}

impl ReloadHandle {
    /// The last reload's result.
    pub fn last(&self) -> Option<Arc<ReloadReport>> {
        self.last.load_full()
    }

    /// Reloads now and returns the result; `None` without a config actor or
    /// when it did not answer in time.
    pub async fn reload(&self) -> Option<ReloadReport> {
        let actor = self.actor.load_full()?;
        ractor::call_t!(actor, ConfigMsg::ReloadNow, RELOAD_TIMEOUT_MS).ok()
    }

    /// Publishes (or clears) the running actor.
    pub(crate) fn publish(&self, actor: Option<ActorRef<ConfigMsg>>) {
        self.actor.store(actor.map(Arc::new));
    }
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A file in the config directory changed.
    File,
    /// SIGHUP (`systemctl reload`).
    Sighup,
    /// An explicit request (admin API, tests).
    Request,
}

impl Trigger {
    /// The name used in logs, metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::File => "file",
            Trigger::Sighup => "sighup",
            Trigger::Request => "request",
        }
    }
}

/// Messages the config actor handles.
pub enum ConfigMsg {
    /// Reload because of `Trigger`.
    Reload(Trigger),
    /// Reload now and answer with the result.
    ReloadNow(RpcReplyPort<ReloadReport>),
}

/// The config actor.
pub struct ConfigActor;

/// What the config actor is started with.
pub struct ConfigArgs {
    /// Where the config is read from.
    pub source: ConfigSource,
    /// The snapshot every reader shares.
    pub config: ConfigHandle,
    /// For `config_rejected` alerts and the published rules hash.
    pub db: DatabaseConnection,
    /// Where the last result is published.
    pub handle: Arc<ReloadHandle>,
}

/// The running actor's state.
pub struct ConfigState {
    args: ConfigArgs,
    /// The file watcher's and the SIGHUP listener's tasks, ended in `post_stop`.
    tasks: Vec<JoinHandle<()>>,
}

impl Actor for ConfigActor {
    type Msg = ConfigMsg;
    type State = ConfigState;
    type Arguments = ConfigArgs;

    async fn pre_start(&self, myself: ActorRef<ConfigMsg>, args: ConfigArgs) -> Result<ConfigState, ActorProcessingErr> {
        let mut tasks = vec![spawn_sighup(myself.clone())?];
        // Out of inotify instances or watches is no reason not to serve: SIGHUP still reloads.
        match spawn_watcher(args.source.path().to_owned(), myself) {
            Ok(watcher) => {
                tasks.push(watcher);
                info!(dir = %args.source.path().display(), "Watching the config directory");
            }
            Err(error) => warn!(dir = %args.source.path().display(), %error, "Cannot watch the config directory; only SIGHUP reloads"),
        }
        let config = args.config.load();
        publish_rules_hash(&args.db, &config.daemon_name, &config.rewards.hash()).await;
        Ok(ConfigState { args, tasks })
    }

    async fn handle(&self, _myself: ActorRef<ConfigMsg>, msg: ConfigMsg, state: &mut ConfigState) -> Result<(), ActorProcessingErr> {
        match msg {
            ConfigMsg::Reload(trigger) => {
                state.reload(trigger).await;
            }
            ConfigMsg::ReloadNow(reply) => {
                let report = state.reload(Trigger::Request).await;
                let _ = reply.send(report);
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<ConfigMsg>, state: &mut ConfigState) -> Result<(), ActorProcessingErr> {
        for task in &state.tasks {
            task.abort();
        }
        Ok(())
    }
}

impl ConfigState {
    async fn reload(&mut self, trigger: Trigger) -> ReloadReport {
        // Three small files: reading them inline is quicker than a blocking-pool hop.
        let loaded = self.args.source.load();
        let running = self.args.config.load_full();
        let plan = plan_reload(&running, loaded);
        let mut report = ReloadReport {
            at: chrono::Utc::now(),
            trigger: trigger.as_str(),
            outcome: "",
            changed: Vec::new(),
            needs_restart: Vec::new(),
            error: None,
            rules_hash: running.rewards.hash(),
        };
        match plan {
            ReloadPlan::Apply { config, changed, needs_restart } => {
                let rules_hash = config.rewards.hash();
                let daemon_name = config.daemon_name.clone();
                self.args.config.store(Arc::from(config));
                info!(trigger = trigger.as_str(), ?changed, "Config reloaded");
                if rules_hash != report.rules_hash {
                    info!(%rules_hash, "Reward rules changed");
                    publish_rules_hash(&self.args.db, &daemon_name, &rules_hash).await;
                }
                report = ReloadReport { outcome: "applied", changed, needs_restart, rules_hash, ..report };
            }
            ReloadPlan::Unchanged { needs_restart } => {
                info!(trigger = trigger.as_str(), "Config reloaded; nothing that applies while running changed");
                report = ReloadReport { outcome: "unchanged", changed: needs_restart.clone(), needs_restart, ..report };
            }
            ReloadPlan::Reject { error } => {
                let details = json!({ "trigger": trigger.as_str(), "error": error });
                alert::raise(&self.args.db, Severity::Error, "config_rejected", "Config edit rejected; the last good config stays", details).await;
                report = ReloadReport { outcome: "rejected", error: Some(error), ..report };
            }
        }
        if !report.needs_restart.is_empty() {
            warn!(needs_restart = ?report.needs_restart, "Config edits kept at their running values until a restart");
        }
        ::metrics::counter!(names::CONFIG_RELOADS, "trigger" => report.trigger, "outcome" => report.outcome).increment(1);
        self.args.handle.last.store(Some(Arc::new(report.clone())));
        report
    }
}

/// Watches `dir` and casts one [`ConfigMsg::Reload`] per burst of edits.
///
/// The directory, not each file, is watched: an editor that saves by writing
/// a new file and renaming it over the old one shows up as an entry created
/// in the directory. The watch is re-added after every burst, so a directory
/// that was itself replaced is watched again.
fn spawn_watcher(dir: PathBuf, actor: ActorRef<ConfigMsg>) -> Result<JoinHandle<()>, notify::Error> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let _ = tx.send(event);
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut relevant = is_edit(&first);
            loop {
                match tokio::time::timeout(RELOAD_QUIET_PERIOD, rx.recv()).await {
                    Ok(Some(event)) => relevant |= is_edit(&event),
                    Ok(None) => return,
                    Err(_quiet) => break,
                }
            }
            if !relevant {
                continue;
            }
            rewatch(&mut watcher, &dir);
            if actor.cast(ConfigMsg::Reload(Trigger::File)).is_err() {
                return;
            }
        }
    }))
}

fn rewatch(watcher: &mut impl Watcher, dir: &Path) {
    let _ = watcher.unwatch(dir);
    if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
        warn!(dir = %dir.display(), %error, "Cannot watch the config directory again; SIGHUP still reloads");
    }
}

/// Whether an event may have changed a config file. Opening and reading
/// (the reload's own reads among them) do not; errors and rescans might.
fn is_edit(event: &notify::Result<notify::Event>) -> bool {
    let Ok(event) = event else { return true };
    if event.need_rescan() {
        return true;
    }
    let writes = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    writes && event.paths.iter().any(|path| path.extension().is_some_and(|ext| ext == "toml"))
}

/// Casts a [`ConfigMsg::Reload`] on every SIGHUP.
fn spawn_sighup(actor: ActorRef<ConfigMsg>) -> std::io::Result<JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            info!(signal = "SIGHUP", "Reloading the config");
            if actor.cast(ConfigMsg::Reload(Trigger::Sighup)).is_err() {
                return;
            }
        }
    }))
}

/// Records this daemon's reward rules hash and raises `rules_mismatch` when
/// daemons sharing the database run different rules (they would compute
/// different rewards for the same event). A failure is logged, never fatal.
async fn publish_rules_hash(db: &DatabaseConnection, daemon_name: &str, hash: &str) {
    match store_rules_hash(db, daemon_name, hash).await {
        Ok(others) if others.is_empty() => {}
        Ok(others) => {
            let details = json!({ "daemon": daemon_name, "rules_hash": hash, "others": others });
            alert::raise(db, Severity::Warning, "rules_mismatch", "Daemons sharing this database run different reward rules", details).await;
        }
        Err(error) => error!(%error, "Cannot record the reward rules hash"),
    }
}

/// Upserts this daemon's row; returns the other daemons whose hash differs,
/// as `name → hash`.
async fn store_rules_hash(db: &impl ConnectionTrait, daemon_name: &str, hash: &str) -> Result<serde_json::Map<String, serde_json::Value>, DbErr> {
    use entity::system_flags;
    let name = format!("{RULES_HASH_FLAG_PREFIX}{daemon_name}");
    let row = system_flags::ActiveModel {
        name: Set(name.clone()),
        value: Set(hash.to_owned()),
        updated_by: Set(daemon_name.to_owned()),
        updated_at: Set(chrono::Utc::now()),
    };
    let on_conflict = OnConflict::column(system_flags::Column::Name)
        .update_columns([system_flags::Column::Value, system_flags::Column::UpdatedBy, system_flags::Column::UpdatedAt])
        .to_owned();
    system_flags::Entity::insert(row).on_conflict(on_conflict).exec_without_returning(db).await?;
    let rows = system_flags::Entity::find().filter(system_flags::Column::Name.starts_with(RULES_HASH_FLAG_PREFIX)).all(db).await?;
    Ok(rows
        .into_iter()
        .filter(|row| row.name != name && row.value != hash)
        .map(|row| (row.name.trim_start_matches(RULES_HASH_FLAG_PREFIX).to_owned(), row.value.into()))
        .collect())
}
