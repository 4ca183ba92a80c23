//! The application: [`Daemon`] wires the supervision tree and the listener
//! together and runs them until a signal or until the tree gives up. `main`
//! (through `cli`) and the integration tests both go through it.

use crate::{chain_health, custody, db, http, idempotency, redact, rewards, systemd, telemetry};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use ractor::{Actor, ActorRef};
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::info;

use crate::breaker::{BreakerConfig, BreakerStatus};
use crate::chain::ChainClient;
use crate::reload::ReloadHandle;
use crate::config::reload::ReloadReport;
use crate::config::{Config, ConfigHandle, ConfigSource};
use crate::custody::MasterKeys;
use crate::http::AppState;
use crate::intake::IntakeSlot;
use crate::rewards::ProcessorSlot;
use crate::slots::ChainSlot;
use crate::supervisor::{ChainStart, RootArgs, RootMsg, RootSupervisor};
use crate::wallet::{RegistryMsg, WalletSettings, WalletStatus};

/// How long the supervision tree gets to stop after the listener has drained.
pub const ACTOR_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the daemon could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// An actor could not be started.
    #[error("cannot start actors: {0}")]
    Spawn(String),
    /// The supervision tree gave up (an actor kept failing).
    #[error("the supervision tree stopped: {0}")]
    Supervisor(String),
    /// Keys could not be loaded or do not decrypt the configured wallets.
    #[error(transparent)]
    Custody(#[from] custody::CustodyError),
    /// The chain configuration cannot be used.
    #[error("chain: {0}")]
    Chain(String),
}

/// A running daemon: listener plus supervision tree.
pub struct Daemon {
    addr: SocketAddr,
    config: ConfigHandle,
    db: DatabaseConnection,
    intake: IntakeSlot,
    chain: ChainSlot,
    processors: ProcessorSlot,
    reload: Arc<ReloadHandle>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    root: ActorRef<RootMsg>,
    root_handle: JoinHandle<()>,
}

impl Daemon {
    /// Connects to the database, applies migrations, starts the supervision
    /// tree and serves `listener`. The config stays as given: nothing reloads it.
    pub async fn start(config: Config, listener: TcpListener) -> Result<Daemon, AppError> {
        Self::launch(config, None, listener).await
    }

    /// Like [`Daemon::start`], and the config actor reloads `config` from
    /// `source` when its files change or on SIGHUP.
    pub async fn start_with_reload(config: Config, source: ConfigSource, listener: TcpListener) -> Result<Daemon, AppError> {
        Self::launch(config, Some(source), listener).await
    }

    async fn launch(config: Config, source: Option<ConfigSource>, listener: TcpListener) -> Result<Daemon, AppError> {
        // Before anything records a metric: recorded before it, they are lost.
        telemetry::metrics::install();
        let db = db::connect(&config).await?;
        db::migrate_up(&db).await.map_err(db::DbError::from)?;
        let addr = listener.local_addr().map_err(|e| AppError::Spawn(e.to_string()))?;
        let chain_start = chain_start(&config, &db).await?;
        // The processors create custodial wallets for new users; without a
        // master key they still process events of known users.
        let keys = match &chain_start {
            Some(chain) => Some(chain.keys.clone()),
            None => MasterKeys::load(config.custody.master_key_file.as_deref()).ok(),
        };
        let max_in_flight = config.server.max_in_flight_stores;
        let config: ConfigHandle = Arc::new(ArcSwap::from_pointee(config));
        let intake: IntakeSlot = Arc::new(ArcSwapOption::empty());
        let chain: ChainSlot = Arc::new(ArcSwapOption::empty());
        let processors: ProcessorSlot = Arc::new(ArcSwap::from_pointee(Vec::new()));
        let reload = Arc::new(ReloadHandle::default());

        let root_args = RootArgs {
            db: db.clone(),
            config: config.clone(),
            intake_slot: intake.clone(),
            chain: chain_start,
            chain_slot: chain.clone(),
            processor_slot: processors.clone(),
            keys: keys.clone(),
            reload: source,
            reload_handle: reload.clone(),
        };
        let processor_keys = keys;
        let (root, root_handle) =
            Actor::spawn(None, RootSupervisor, root_args).await.map_err(|e| AppError::Spawn(e.to_string()))?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let max_streams = config.load().stream.max_streams;
        let state = Arc::new(AppState {
            config: config.clone(),
            db: db.clone(),
            intake: intake.clone(),
            chain: chain.clone(),
            keys: processor_keys,
            idempotency: idempotency::cache::Cache::connect(&config.load().redis),
            admission: Semaphore::new(max_in_flight),
            limits: http::RateLimits::new(&config.load()),
            streams: Arc::new(Semaphore::new(max_streams)),
            shutdown: shutdown_rx.clone(),
            admin: http::AdminHandles { reload: reload.clone(), processors: processors.clone() },
        });
        let server = tokio::spawn(http::serve(listener, state, shutdown_rx));
        info!(%addr, "havend is listening");
        Ok(Daemon { addr, config, db, intake, chain, processors, reload, shutdown, server, root, root_handle })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The database connection pool (tests inspect the inbox through it).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The live config handle (reload swaps the snapshot behind it).
    pub fn config(&self) -> &ConfigHandle {
        &self.config
    }

    /// The last config reload's result (none before the first reload).
    pub fn last_reload(&self) -> Option<Arc<ReloadReport>> {
        self.reload.last()
    }

    /// Reloads the config now; `None` when started without a config source.
    pub async fn reload(&self) -> Option<ReloadReport> {
        self.reload.reload().await
    }

    /// Runs until `signal` completes (SIGTERM/SIGINT in `main`) or the
    /// supervision tree gives up, then shuts down gracefully. Under systemd
    /// it reports ready, pings the watchdog while the actors live, and
    /// reports stopping.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), AppError> {
        systemd::ready();
        let alive = self.liveness();
        let watchdog = async move {
            match systemd::watchdog_interval() {
                Some(interval) => systemd::watchdog(interval, alive).await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            _ = signal => Ok(()),
            _ = &mut self.root_handle => Err(AppError::Supervisor("an actor kept failing".into())),
            never = watchdog => match never {},
        };
        systemd::stopping();
        self.shutdown().await;
        outcome
    }

    /// Whether the supervision tree runs with an intake actor and its
    /// processors in place (a restart in progress counts as not alive).
    fn liveness(&self) -> impl Fn() -> bool + use<> {
        let (root, intake, processors) = (self.root.clone(), self.intake.clone(), self.processors.clone());
        move || root.get_status() == ractor::ActorStatus::Running && intake.load().is_some() && !processors.load().is_empty()
    }

    /// Stops accepting, lets in-flight requests finish, then stops the actors
    /// (the intake actor flushes what it holds before it stops).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        if !self.root_handle.is_finished() {
            self.root.stop(Some("shutdown".into()));
            let _ = tokio::time::timeout(ACTOR_STOP_TIMEOUT, self.root_handle).await;
        }
        let _ = self.db.close_by_ref().await;
        info!("havend stopped");
    }

    /// Test-only: makes the current intake actor panic; returns its id.
    #[cfg(feature = "test-hooks")]
    pub fn inject_intake_panic(&self) -> Option<ractor::ActorId> {
        let intake = self.intake.load_full()?;
        let _ = intake.cast(crate::intake::IntakeMsg::Panic);
        Some(intake.get_id())
    }

    /// The id of the intake actor currently published (a restart changes it).
    pub fn intake_actor_id(&self) -> Option<ractor::ActorId> {
        self.intake.load().as_ref().map(|intake| intake.get_id())
    }
}

impl Daemon {
    /// Every wallet actor's status (empty without a chain).
    pub async fn wallet_statuses(&self) -> Vec<WalletStatus> {
        let Some(chain) = self.chain.load_full() else { return Vec::new() };
        ractor::call_t!(chain.registry, RegistryMsg::Statuses, 5_000).unwrap_or_default()
    }

    /// Tells every wallet actor that work may be waiting.
    pub fn nudge_wallets(&self) {
        if let Some(chain) = self.chain.load_full() {
            let _ = chain.registry.cast(RegistryMsg::Nudge(None));
        }
    }

    /// Tells every processor that inbox events may be waiting (after a replay, say).
    pub fn nudge_processors(&self) {
        rewards::processor::nudge(&self.processors);
    }

    /// The RPC circuit breaker's status.
    pub async fn breaker_status(&self) -> Option<BreakerStatus> {
        let chain = self.chain.load_full()?;
        chain.breaker.status().await
    }

    /// The chain's last background health reading (`None` without a chain).
    pub fn chain_health(&self) -> Option<chain_health::ChainHealth> {
        let chain = self.chain.load_full()?;
        Some(**chain.health.load())
    }

    /// Operator reset of the RPC circuit breaker to CLOSED.
    pub fn reset_breaker(&self) {
        if let Some(chain) = self.chain.load_full() {
            chain.breaker.reset();
        }
    }
}

/// Checks the `[chain]` config against the database and keys: the daemon
/// refuses to start without a master key, or with one that does not decrypt
/// the hot wallets it is to sign for.
async fn chain_start(config: &Config, db: &DatabaseConnection) -> Result<Option<ChainStart>, AppError> {
    let Some(chain) = &config.chain else { return Ok(None) };
    let keys = MasterKeys::load(config.custody.master_key_file.as_deref())?;
    // The client's own error quotes the URL, which may carry an API key.
    let client = ChainClient::new(&chain.rpc_url, Duration::from_millis(chain.rpc_timeout_ms))
        .map_err(|_| AppError::Chain(format!("invalid RPC URL {}", redact::rpc_url(&chain.rpc_url))))?;
    let mut wallets = Vec::with_capacity(chain.wallets.len());
    for address in &chain.wallets {
        let wallet = custody::find(db, &address.to_string()).await?;
        if wallet.kind != custody::HOT {
            return Err(AppError::Chain(format!("wallet {address} is not a hot wallet")));
        }
        custody::unlock(db, &keys, &wallet, &config.daemon_name, "start-up key check").await?;
        wallets.push(wallet.id);
    }
    Ok(Some(ChainStart {
        client,
        token: chain.token,
        keys,
        wallets,
        settings: WalletSettings::from_config(chain),
        breaker: BreakerConfig {
            failure_threshold: config.breaker.failure_threshold,
            open_for: Duration::from_secs(config.breaker.open_secs),
            close_after: config.breaker.close_after,
        },
        owner: config.daemon_name.clone(),
    }))
}

/// Runs the daemon on `listener` until `signal` completes, reloading its
/// config from `source` on edits and SIGHUP.
pub async fn run(config: Config, source: ConfigSource, listener: TcpListener, signal: impl Future<Output = ()>) -> Result<(), AppError> {
    Daemon::start_with_reload(config, source, listener).await?.run_until(signal).await
}
