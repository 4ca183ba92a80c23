//! havend: turns signed partner webhooks into HAVEN token rewards.
//!
//! # Layout
//! - [`config`]: TOML files + environment → a validated, swappable snapshot.
//! - [`webhooks`]: partners, signature schemes and payload rules (pure logic).
//! - [`http`]: the hyper listener, routing, and the SPEC's error shape.
//! - [`intake`]: the actor that group-commits verified events into the inbox.
//! - [`supervisor`]: the root of the actor tree; restarts failed actors.
//! - [`db`]: the database connection and migrations.
//! - [`cli`]: the `havend` command line.
//! - [`telemetry`]: logging.
//!
//! [`Daemon::start`] is the one place that wires the supervision tree and the
//! listener together; `main` and the integration tests both go through it.

pub mod cli;
pub mod config;
pub mod db;
pub mod http;
pub mod intake;
pub mod supervisor;
pub mod telemetry;
pub mod webhooks;

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

use crate::config::{Config, ConfigHandle};
use crate::http::AppState;
use crate::intake::IntakeSlot;
use crate::supervisor::{RootArgs, RootMsg, RootSupervisor};

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
}

/// A running daemon: listener plus supervision tree.
pub struct Daemon {
    addr: SocketAddr,
    config: ConfigHandle,
    db: DatabaseConnection,
    intake: IntakeSlot,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    root: ActorRef<RootMsg>,
    root_handle: JoinHandle<()>,
}

impl Daemon {
    /// Connects to the database, applies migrations, starts the supervision
    /// tree and serves `listener`.
    pub async fn start(config: Config, listener: TcpListener) -> Result<Daemon, AppError> {
        let db = db::connect(&config).await?;
        db::migrate_up(&db).await.map_err(db::DbError::from)?;
        let addr = listener.local_addr().map_err(|e| AppError::Spawn(e.to_string()))?;
        let max_in_flight = config.server.max_in_flight_stores;
        let config: ConfigHandle = Arc::new(ArcSwap::from_pointee(config));
        let intake: IntakeSlot = Arc::new(ArcSwapOption::empty());

        let root_args = RootArgs { db: db.clone(), config: config.clone(), intake_slot: intake.clone() };
        let (root, root_handle) =
            Actor::spawn(None, RootSupervisor, root_args).await.map_err(|e| AppError::Spawn(e.to_string()))?;

        let state = Arc::new(AppState {
            config: config.clone(),
            db: db.clone(),
            intake: intake.clone(),
            admission: Semaphore::new(max_in_flight),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let server = tokio::spawn(http::serve(listener, state, shutdown_rx));
        info!(%addr, "havend is listening");
        Ok(Daemon { addr, config, db, intake, shutdown, server, root, root_handle })
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

    /// Runs until `signal` completes (SIGTERM/SIGINT in `main`) or the
    /// supervision tree gives up, then shuts down gracefully.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), AppError> {
        let outcome = tokio::select! {
            _ = signal => Ok(()),
            _ = &mut self.root_handle => Err(AppError::Supervisor("an actor kept failing".into())),
        };
        self.shutdown().await;
        outcome
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
        let _ = intake.cast(intake::IntakeMsg::Panic);
        Some(intake.get_id())
    }

    /// The id of the intake actor currently published (a restart changes it).
    pub fn intake_actor_id(&self) -> Option<ractor::ActorId> {
        self.intake.load().as_ref().map(|intake| intake.get_id())
    }
}

/// Runs the daemon on `listener` until `signal` completes.
pub async fn run(config: Config, listener: TcpListener, signal: impl Future<Output = ()>) -> Result<(), AppError> {
    Daemon::start(config, listener).await?.run_until(signal).await
}
