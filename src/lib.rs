//! havend: turns signed partner webhooks into HAVEN token rewards.
//!
//! # Layout
//! - [`config`] loads TOML files and environment secrets into a validated, swappable snapshot
//!   and plans reloads (a leaf: it imports no actor).
//! - [`reload`] is the actor that reloads the config on edits and SIGHUP and carries out the plan.
//! - [`severity`] is how urgent an alert is (a leaf, so `config` and `alert` share it).
//! - [`signing`] holds what config and webhooks share: signature schemes and secrets (a leaf).
//! - [`redact`] says what of a URL may be shown in logs, errors, alerts and config views (a leaf).
//! - [`retry`] is the backoff policy every retry shares: alert deliveries, reward events, refused and parked wallets (a leaf, on `backon`).
//! - [`webhooks`] knows the partners, their signature schemes and payload rules (pure logic).
//! - [`http`] is the hyper listener, its routing and the SPEC's error shape.
//! - [`intake`] is the actor that group-commits verified events into the inbox.
//! - [`chain`] holds the token bindings, the RPC client, signing and admin operations.
//! - [`chain_health`] is the actor that refreshes the chain part of `/health` in the background.
//! - [`custody`] encrypts, decrypts (audited), rotates and revokes wallet keys.
//! - [`ledger`] holds users, reward intents and redemptions.
//! - [`token`] is what the token API's mints and redemptions do to the ledger.
//! - [`idempotency`] makes token API writes run once per Idempotency-Key (database, Redis cache).
//! - [`sessions`] makes and checks cross-app session tokens for partner apps (and their permission model).
//! - [`live`] is the journal of status changes behind the SSE stream, and its gap rule.
//! - [`rewards`] turns stored partner events into reward intents (rules, handlers, the processor actor).
//! - [`monitor`] watches in-flight transactions and gas prices, raises alerts and samples the gauges.
//! - [`schedule`] runs the periodic jobs (partner syncs, staking yield, purging raw bodies, clean-up).
//! - [`wallet`] runs one actor per hot wallet, the sole owner of its nonces.
//! - [`breaker`] guards the RPC with a circuit breaker actor.
//! - [`alert`] records alerts for operators and delivers them from the table (webhooks, e-mail).
//! - [`supervisor`] is the root of the actor tree and restarts failed actors.
//! - [`restart`] is the restart budget supervisors share; [`slots`] is where running actors are published for their readers.
//! - [`db`] opens the database and runs migrations.
//! - [`cli`] and [`dev`] are the `havend` command line and its all-in-one dev mode.
//! - [`telemetry`] sets up logging and names the Prometheus metrics (their recorder).
//! - [`hooks`] holds what the test-only failpoints share.
//! - [`systemd`] speaks systemd's readiness and watchdog protocol.
//!
//! [`app`] holds [`Daemon`], the one place that wires the supervision tree
//! and the listener together; `main` and the integration tests both go
//! through it. The README's Layout section orders these modules in layers
//! that import only sideways or down.

pub mod app;
pub mod breaker;
pub mod chain;
pub mod chain_health;
pub mod alert;
pub mod cli;
pub mod custody;
pub mod config;
pub mod db;
pub mod dev;
pub mod hooks;
pub mod http;
pub mod idempotency;
pub mod intake;
pub mod ledger;
pub mod live;
pub mod monitor;
pub mod redact;
pub mod reload;
pub mod restart;
pub mod retry;
pub mod rewards;
pub mod schedule;
pub mod sessions;
pub mod severity;
pub mod signing;
pub mod slots;
pub mod supervisor;
pub mod systemd;
pub mod telemetry;
pub mod token;
pub mod wallet;
pub mod webhooks;

pub use app::{ACTOR_STOP_TIMEOUT, AppError, Daemon, run};
