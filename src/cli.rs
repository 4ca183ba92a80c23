//! The `havend` command line: `run`, `dev`, `migrate`, `check-config`,
//! `sign-webhook`, wallet custody, the rewards operator commands and alerts.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigSource, Secret};
use crate::webhooks::signature::Signed;
use crate::webhooks::{Partner, Scheme};

/// Why a command failed (the binary prints it with its sources).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A command refused or found nothing (no such event, no chain, an unconfirmed export).
    #[error("{0}")]
    Message(String),
    /// A step that failed on `source`; `message` says which.
    #[error("{message}")]
    Context {
        /// What was attempted.
        message: String,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The async runtime could not start.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The output could not be made JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The database could not be opened.
    #[error(transparent)]
    DbOpen(#[from] crate::db::DbError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    /// The daemon could not start or stopped abnormally.
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    /// `havend dev` could not prepare its setup.
    #[error(transparent)]
    Dev(#[from] crate::dev::DevError),
    /// The master key or a wallet failed.
    #[error(transparent)]
    Custody(#[from] crate::custody::CustodyError),
    /// A wallet could not be rotated, activated, resumed or revoked.
    #[error(transparent)]
    Lifecycle(#[from] crate::wallet::lifecycle::LifecycleError),
    /// Granting roles failed.
    #[error(transparent)]
    Admin(#[from] crate::chain::admin::AdminError),
    /// An RPC call failed.
    #[error(transparent)]
    Rpc(#[from] crate::chain::RpcFailure),
    /// A stored address is not an address.
    #[error(transparent)]
    Address(#[from] alloy::hex::FromHexError),
    /// The test alert could not be raised.
    #[error(transparent)]
    Alert(#[from] crate::alert::AlertError),
    /// A held intent could not be released or cancelled.
    #[error(transparent)]
    Operator(#[from] crate::rewards::operator::OperatorError),
    /// A scheduled job failed.
    #[error(transparent)]
    Job(#[from] crate::schedule::JobError),
    /// The staking rewards run failed.
    #[error(transparent)]
    Staking(#[from] crate::rewards::staking::StakingError),
    /// Reconciliation could not run.
    #[error(transparent)]
    Reconcile(#[from] crate::ledger::reconcile::ReconcileError),
}

impl CliError {
    /// `message` about `source`, as `.context(message)` said it.
    fn context(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> CliError {
        CliError::Context { message: message.into(), source: Box::new(source) }
    }
}

/// havend: partner webhooks in, HAVEN token rewards out.
#[derive(Debug, Parser)]
#[command(name = "havend", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// havend's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (applies pending migrations first).
    Run {
        /// The config directory (havend.toml, partners.toml).
        #[arg(long, env = "HAVEND_CONFIG", default_value = "config")]
        config: PathBuf,
    },
    /// Run a complete local setup: SQLite, a local anvil with HAVEN deployed,
    /// a funded hot wallet, and the daemon (the one command for a fresh machine).
    Dev {
        /// The config directory (partners' dev secrets); `[chain]` unset → a local anvil.
        #[arg(long, env = "HAVEND_CONFIG", default_value = "config")]
        config: PathBuf,
    },
    /// Manage custodial wallets (every sensitive step is audit-logged).
    Wallet {
        /// The config directory, for the database and master key.
        #[arg(long, env = "HAVEND_CONFIG", default_value = "config")]
        config: PathBuf,
        /// What to do.
        #[command(subcommand)]
        action: WalletAction,
    },
    /// Print a new random master key line (`version:hex`) for HAVEND_MASTER_KEY.
    NewMasterKey {
        /// The key version (raise it when rotating the master key).
        #[arg(long, default_value_t = 1)]
        version: i32,
    },
    /// Apply, revert or list database migrations.
    Migrate {
        /// The config directory, for the database URL.
        #[arg(long, env = "HAVEND_CONFIG", default_value = "config")]
        config: PathBuf,
        /// up, down or status.
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Validate a config directory and print the effective config, secrets redacted.
    CheckConfig {
        /// The config directory.
        dir: PathBuf,
    },
    /// Print the headers a partner would send with a body (for curl: `-H @file`).
    SignWebhook {
        /// aurora, tribe, stripe or hi-events.
        #[arg(long)]
        partner: Partner,
        /// The webhook secret (or HAVEND_SIGN_SECRET, which keeps it out of `ps`).
        #[arg(long, env = "HAVEND_SIGN_SECRET", hide_env_values = true)]
        secret: String,
        /// The file holding the exact body to send.
        #[arg(long)]
        body: PathBuf,
        /// Override the partner's usual scheme.
        #[arg(long)]
        scheme: Option<SchemeArg>,
        /// Unix timestamp to sign with (default: now).
        #[arg(long)]
        timestamp: Option<i64>,
        /// Standard Webhooks message id (default: a new one).
        #[arg(long)]
        id: Option<String>,
        /// Sign `"{timestamp}.{event}.{body}"`, as a haven-hmac partner with
        /// `sign_event = true` does; the event as in the URL (`booking-created`).
        #[arg(long)]
        event: Option<String>,
    },
    /// Inbox events: re-queue a dead-lettered one.
    Events {
        /// The config directory, for the database.
        #[arg(long, env = "HAVEND_CONFIG", default_value = "config")]
        config: PathBuf,
        /// What to do.
        #[command(subcommand)]
        action: EventsAction,
    },
    /// Reward intents held over a mint limit: list, release or cancel them.
    Intents {
        /// The config directory, for the database.
        #[arg(long, env = "HAVEND_CONFIG", default_value = "config")]
        config: PathBuf,
        /// What to do.
        #[command(subcommand)]
        action: IntentsAction,
    },
    /// Pause signing of new work on every daemon sharing the database (intake and processing go on).
    Pause {
        /// The config directory, for the database.
        #[arg(long, env = "HAVEND_CONFIG", default_value = "config")]
        config: PathBuf,
    },
    /// Resume signing after `havend pause`.
    Resume {
        /// The config directory, for the database.
        #[arg(long, env = "HAVEND_CONFIG", default_value = "config")]
        config: PathBuf,
    },
    /// Run a scheduled job now.
    Jobs {
        /// The config directory.
        #[arg(long, env = "HAVEND_CONFIG", default_value = "config")]
        config: PathBuf,
        /// Which job.
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Compare every user's ledger balance and the total supply with the chain at one block; exit 1 on a difference.
    Reconcile {
        /// The config directory.
        #[arg(long, env = "HAVEND_CONFIG", default_value = "config")]
        config: PathBuf,
        /// The chain, when the config has no `[chain]` (as under `havend dev`).
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// In-flight work at a glance: intents by status, the oldest pending, each hot wallet's next nonce and backlog.
    TransactionsSummary {
        /// The config directory, for the database.
        #[arg(long, env = "HAVEND_CONFIG", default_value = "config")]
        config: PathBuf,
    },
    /// Alerts: send a test alert, list the newest, count them (JSON output).
    Alerts {
        /// The config directory (database and alert channels).
        #[arg(long, env = "HAVEND_CONFIG", default_value = "config")]
        config: PathBuf,
        /// What to do.
        #[command(subcommand)]
        action: AlertsAction,
    },
    /// Show a user: custodial address, ledger balance, pending intents and (with a chain) the on-chain balance.
    User {
        /// The config directory.
        #[arg(long, env = "HAVEND_CONFIG", default_value = "config")]
        config: PathBuf,
        /// `{partner}:{id}` (e.g. `aurora:guest_001`) or havend's user id.
        user: String,
        /// The chain, when the config has no `[chain]` (as under `havend dev`).
        #[command(flatten)]
        chain: ChainArgs,
    },
}

/// Where to read the chain when the config does not say.
#[derive(Debug, clap::Args)]
pub struct ChainArgs {
    /// JSON-RPC URL (default: `chain.rpc_url`).
    #[arg(long)]
    pub rpc_url: Option<String>,
    /// The HAVEN token (default: `chain.token`).
    #[arg(long)]
    pub token: Option<alloy::primitives::Address>,
}

/// `havend events` actions.
#[derive(Debug, Subcommand)]
pub enum EventsAction {
    /// Re-queue a dead-lettered event (havend's id or `{partner}:{partner event id}`).
    Replay {
        /// The event.
        event: String,
    },
}

/// `havend alerts` actions.
#[derive(Debug, Subcommand)]
pub enum AlertsAction {
    /// Raise a `system_test` INFO alert and wait for its delivery result; exit 1 unless delivered.
    Test,
    /// The newest alerts with every delivery attempt's result.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u64,
    },
    /// Counts by severity, category, delivery status, and attempts by channel and outcome.
    Stats,
}

/// `havend intents` actions.
#[derive(Debug, Subcommand)]
pub enum IntentsAction {
    /// List held intents.
    Held,
    /// Queue a held intent on its user's current hot wallet.
    Release {
        /// The intent's id.
        id: uuid::Uuid,
    },
    /// Cancel a held intent: nothing is minted.
    Cancel {
        /// The intent's id.
        id: uuid::Uuid,
    },
}

/// `havend jobs run` jobs.
#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// Run a job now.
    Run {
        /// Which job.
        #[command(subcommand)]
        job: Job,
    },
}

/// Jobs `havend jobs run` can start.
#[derive(Debug, Subcommand)]
pub enum Job {
    /// Pull missed Aurora events from its API into the inbox.
    AuroraSync,
    /// Pull missed Tribe events from its API into the inbox.
    TribeSync,
    /// Purge raw bodies of final events older than `schedule.body_retention_days`.
    PurgeBodies,
    /// Delete expired cross-app sessions and idempotency keys, and live-update
    /// journal rows older than `stream.retention_hours`.
    Cleanup,
    /// Pay every completed staking week that has no payout yet.
    StakingRewards {
        /// Pay as if it were this date (UTC midnight; default: now).
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
    },
}

/// `havend wallet` actions.
#[derive(Debug, Subcommand)]
pub enum WalletAction {
    /// Create a hot wallet in standby (then grant it roles, fund it, and activate it).
    Create,
    /// List hot wallets.
    List,
    /// Show one wallet's public information.
    Get {
        /// Id or address.
        wallet: String,
    },
    /// Start replacing a hot wallet with a new standby one; its queued work
    /// and users move when the new wallet is activated.
    Rotate {
        /// Id or address.
        wallet: String,
    },
    /// Make a standby hot wallet active, after checking on chain that it holds
    /// both roles and gas above `chain.min_balance_wei`.
    Activate {
        /// Id or address.
        wallet: String,
    },
    /// Lift a hot wallet's halt after a foreign nonce (someone else used
    /// its key): nonces the foreign signer used are recorded and skipped.
    Resume {
        /// Id or address.
        wallet: String,
    },
    /// Revoke a wallet: it signs nothing more.
    Revoke {
        /// Id or address.
        wallet: String,
    },
    /// Print a wallet's private key (audited HIGH).
    Export {
        /// Id or address.
        wallet: String,
        /// Confirms that the key is to be printed.
        #[arg(long)]
        yes: bool,
    },
    /// Re-encrypt every wallet under the newest master key version.
    Reencrypt,
    /// Show a wallet's audit log.
    Audit {
        /// Id or address.
        wallet: String,
    },
    /// Grant a hot wallet the minter and burner roles, signing as the token admin.
    GrantRoles {
        /// Id or address.
        wallet: String,
        /// Environment variable holding the admin's private key.
        #[arg(long, default_value = "HAVEND_ADMIN_KEY")]
        admin_key_env: String,
    },
}

/// `havend migrate` actions.
#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert the last migrations.
    Down {
        /// How many to revert.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

/// The signature scheme, as a command-line value.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchemeArg {
    /// X-{Partner}-Signature / -Timestamp.
    HavenHmac,
    /// Stripe-Signature.
    Stripe,
    /// webhook-id / webhook-timestamp / webhook-signature.
    StandardWebhooks,
}

impl From<SchemeArg> for Scheme {
    fn from(arg: SchemeArg) -> Self {
        match arg {
            SchemeArg::HavenHmac => Scheme::HavenHmac,
            SchemeArg::Stripe => Scheme::Stripe,
            SchemeArg::StandardWebhooks => Scheme::StandardWebhooks,
        }
    }
}

/// Runs a parsed command line; the process exits with the returned code.
pub fn execute(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::CheckConfig { dir } => check_config(&dir),
        Command::SignWebhook { partner, secret, body, scheme, timestamp, id, event } => sign_webhook(partner, secret, &body, scheme, timestamp, id, event),
        Command::Run { config } => run_daemon(config),
        Command::NewMasterKey { version } => {
            println!("{}", crate::custody::MasterKeys::generate_text(version));
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev { config } => dev(config),
        Command::Wallet { config, action } => {
            let config = load(&config)?;
            runtime()?.block_on(wallet_command(config, action))
        }
        Command::Events { config, action } => operator(&config, OperatorCommand::Events(action)),
        Command::Intents { config, action } => operator(&config, OperatorCommand::Intents(action)),
        Command::Alerts { config, action } => operator(&config, OperatorCommand::Alerts(action)),
        Command::Pause { config } => operator(&config, OperatorCommand::Pause(true)),
        Command::Resume { config } => operator(&config, OperatorCommand::Pause(false)),
        Command::Jobs { config, action } => operator(&config, OperatorCommand::Jobs(action)),
        Command::Reconcile { config, chain } => operator(&config, OperatorCommand::Reconcile(chain)),
        Command::User { config, user, chain } => operator(&config, OperatorCommand::User(user, chain)),
        Command::TransactionsSummary { config } => operator(&config, OperatorCommand::TransactionsSummary),
        Command::Migrate { config, action } => migrate(&config, action),
    }
}

/// `havend check-config`: the effective config, or why it does not load (exit 1).
fn check_config(dir: &std::path::Path) -> Result<ExitCode, CliError> {
    match Config::load(dir) {
        Ok(config) => {
            print!("{}", config.to_redacted_toml());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{}: {errors}", dir.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `havend sign-webhook`: prints the headers a partner would send with `body`.
fn sign_webhook(partner: Partner, secret: String, body: &std::path::Path, scheme: Option<SchemeArg>, timestamp: Option<i64>, id: Option<String>, event: Option<String>) -> Result<ExitCode, CliError> {
    let body = std::fs::read(body).map_err(|e| CliError::context(format!("cannot read {}", body.display()), e))?;
    let scheme = scheme.map(Scheme::from).unwrap_or(partner.default_scheme());
    let timestamp = timestamp.unwrap_or_else(|| chrono::Utc::now().timestamp());
    let id = id.unwrap_or_else(|| format!("msg_{}", uuid::Uuid::new_v4().simple()));
    let signed = Signed { event: event.as_deref(), body: &body };
    let headers = scheme
        .sign(partner, &Secret::new(secret), signed, timestamp, &id)
        .map_err(|problem| CliError::Message(format!("cannot sign: {problem}")))?;
    println!("Content-Type: application/json");
    for (name, value) in headers {
        println!("{name}: {value}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `havend run`: the daemon on the config in `dir`, until SIGTERM or SIGINT.
fn run_daemon(dir: PathBuf) -> Result<ExitCode, CliError> {
    let config = load(&dir)?;
    crate::telemetry::init(&config.log);
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| CliError::context(format!("cannot listen on {}", config.server.listen), e))?;
        crate::run(config, ConfigSource::dir(dir), listener, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `havend dev`: prepares the local setup around the config in `dir`, then
/// runs the daemon on it, printing the banner once it listens.
fn dev(dir: PathBuf) -> Result<ExitCode, CliError> {
    let config = load(&dir)?;
    crate::telemetry::init(&config.log);
    runtime()?.block_on(async {
        let (config, _anvil) = crate::dev::prepare(config).await?;
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| CliError::context(format!("cannot listen on {}", config.server.listen), e))?;
        let banner = crate::dev::banner(&config)?;
        let source = ConfigSource::with_overlay(dir, crate::dev::overlay(&config));
        let daemon = crate::Daemon::start_with_reload(config, source, listener).await?;
        println!("{banner}");
        daemon.run_until(shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `havend migrate`: applies or reverts migrations, then lists them all.
fn migrate(dir: &std::path::Path, action: MigrateAction) -> Result<ExitCode, CliError> {
    let config = load(dir)?;
    runtime()?.block_on(async {
        let db = crate::db::connect(&config).await?;
        match action {
            MigrateAction::Up => crate::db::migrate_up(&db).await?,
            MigrateAction::Down { steps } => crate::db::migrate_down(&db, steps).await?,
            MigrateAction::Status => {}
        }
        for (name, applied) in crate::db::migration_status(&db).await? {
            println!("{} {name}", if applied { "applied" } else { "pending" });
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn wallet_command(config: Config, action: WalletAction) -> Result<ExitCode, CliError> {
    use crate::custody;
    use crate::wallet::lifecycle;
    let db = crate::db::connect(&config).await?;
    crate::db::migrate_up(&db).await?;
    let keys = || custody::MasterKeys::load(config.custody.master_key_file.as_deref());
    let actor = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
    let describe = |w: &entity::wallets::Model| {
        serde_json::json!({
            "id": w.id, "address": w.address, "kind": w.kind, "status": w.status, "key_version": w.key_version,
            "next_nonce": w.next_nonce, "owner": w.owner, "rotated_to": w.rotated_to, "created_at": w.created_at,
            "heartbeat_at": w.heartbeat_at, "halted": w.halted,
        })
    };
    let output = match action {
        WalletAction::Create => describe(&custody::create_wallet(&db, &keys()?, custody::HOT, &actor).await?),
        WalletAction::List => serde_json::Value::Array(custody::list_hot(&db).await?.iter().map(describe).collect()),
        WalletAction::Get { wallet } => describe(&custody::find(&db, &wallet).await?),
        WalletAction::Rotate { wallet } => {
            let old = custody::find(&db, &wallet).await?;
            let new = lifecycle::rotate(&db, &keys()?, &old, &actor).await?;
            eprintln!("Grant {} its roles (havend wallet grant-roles), fund it, add it to chain.wallets, then `havend wallet activate {}`; {} signs until then, and stays in chain.wallets until its signed work is confirmed.", new.address, new.address, old.address);
            describe(&new)
        }
        WalletAction::Activate { wallet } => {
            let Some(chain) = &config.chain else { return Err(CliError::Message("activate needs a [chain] section (rpc_url, token) to check roles and gas".into())) };
            let settings = crate::wallet::WalletSettings::from_config(chain);
            let client = crate::chain::ChainClient::new(&chain.rpc_url, std::time::Duration::from_millis(chain.rpc_timeout_ms)).map_err(CliError::Message)?;
            let wallet = custody::find(&db, &wallet).await?;
            let activation = lifecycle::activate_checked(&db, &client, chain.token, settings.min_balance, &wallet, &actor).await?;
            serde_json::json!({ "wallet": describe(&custody::find(&db, &wallet.address).await?), "activation": activation })
        }
        WalletAction::Resume { wallet } => {
            let wallet = custody::find(&db, &wallet).await?;
            let lifted = lifecycle::resume(&db, &wallet, &actor).await?;
            eprintln!("Resumed {} (was halted: {lifted}); rotate it instead if its key may be in other hands.", wallet.address);
            describe(&custody::find(&db, &wallet.address).await?)
        }
        WalletAction::Revoke { wallet } => {
            let wallet = custody::find(&db, &wallet).await?;
            lifecycle::revoke(&db, &wallet, &actor).await?;
            describe(&custody::find(&db, &wallet.address).await?)
        }
        WalletAction::Export { wallet, yes } => {
            if !yes {
                return Err(CliError::Message("exporting prints a private key; pass --yes to confirm (the export is audit-logged HIGH)".into()));
            }
            let wallet = custody::find(&db, &wallet).await?;
            let key = custody::export(&db, &keys()?, &wallet, &actor).await?;
            serde_json::json!({ "address": wallet.address, "private_key": key.as_str() })
        }
        WalletAction::Reencrypt => serde_json::json!({ "reencrypted": custody::reencrypt_all(&db, &keys()?, &actor).await? }),
        WalletAction::Audit { wallet } => {
            let wallet = custody::find(&db, &wallet).await?;
            let rows = custody::audit_log(&db, wallet.id).await?;
            serde_json::Value::Array(rows.into_iter().map(|r| serde_json::json!({
                "at": r.created_at, "action": r.action, "severity": r.severity, "actor": r.actor, "details": r.details,
            })).collect())
        }
        WalletAction::GrantRoles { wallet, admin_key_env } => {
            let Some(chain) = &config.chain else { return Err(CliError::Message("grant-roles needs a [chain] section (rpc_url, token)".into())) };
            let admin: alloy::signers::local::PrivateKeySigner = std::env::var(&admin_key_env)
                .map_err(|e| CliError::context(format!("set {admin_key_env} to the token admin's private key"), e))?
                .parse()
                .map_err(|e: alloy::signers::local::LocalSignerError| CliError::context("the admin key is not a private key", e))?;
            let wallet = custody::find(&db, &wallet).await?;
            crate::chain::admin::grant_roles(&chain.rpc_url, &admin, chain.token, wallet.address.parse()?).await?;
            custody::audit(&db, Some(wallet.id), "grant_roles", "MEDIUM", &actor, serde_json::json!({ "admin": admin.address() })).await?;
            describe(&wallet)
        }
    };
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(ExitCode::SUCCESS)
}

/// The rewards operator commands, run against the configured database.
enum OperatorCommand {
    Events(EventsAction),
    Intents(IntentsAction),
    Alerts(AlertsAction),
    Pause(bool),
    Jobs(JobsAction),
    Reconcile(ChainArgs),
    User(String, ChainArgs),
    TransactionsSummary,
}

fn operator(dir: &std::path::Path, command: OperatorCommand) -> Result<ExitCode, CliError> {
    use crate::rewards::{inbox, operator, staking};
    let config = load(dir)?;
    runtime()?.block_on(async {
        let db = crate::db::connect(&config).await?;
        crate::db::migrate_up(&db).await?;
        let actor = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
        let chain = |args: &ChainArgs| -> Result<(crate::chain::ChainClient, alloy::primitives::Address), CliError> {
            let rpc_url = args.rpc_url.clone().or_else(|| config.chain.as_ref().map(|c| c.rpc_url.clone()));
            let token = args.token.or_else(|| config.chain.as_ref().map(|c| c.token));
            let (Some(rpc_url), Some(token)) = (rpc_url, token) else { return Err(CliError::Message("no chain: configure [chain] or pass --rpc-url and --token".into())) };
            Ok((crate::chain::ChainClient::new(&rpc_url, std::time::Duration::from_secs(10)).map_err(CliError::Message)?, token))
        };
        let mut code = ExitCode::SUCCESS;
        let output = match command {
            OperatorCommand::Events(EventsAction::Replay { event }) => match inbox::replay(&db, &event).await? {
                inbox::Replay::Requeued(id) => serde_json::json!({ "replayed": id }),
                inbox::Replay::NotFound => return Err(CliError::Message(format!("no event {event}"))),
                inbox::Replay::NotDeadLettered(status) => return Err(CliError::Message(format!("event {event} is {status}; only dead-lettered events are replayed"))),
            },
            OperatorCommand::Alerts(AlertsAction::Test) => {
                let alert = crate::alert::send_test(&db, &config, &actor).await?;
                if alert.delivery_status != crate::alert::store::DELIVERED {
                    code = ExitCode::FAILURE;
                }
                serde_json::to_value(alert)?
            }
            OperatorCommand::Alerts(AlertsAction::List { limit }) => serde_json::to_value(crate::alert::store::list(&db, limit).await?)?,
            OperatorCommand::Alerts(AlertsAction::Stats) => serde_json::to_value(crate::alert::store::stats(&db).await?)?,
            OperatorCommand::Intents(IntentsAction::Held) => {
                serde_json::Value::Array(operator::list_held(&db).await?.iter().map(describe_intent).collect())
            }
            OperatorCommand::Intents(IntentsAction::Release { id }) => describe_intent(&operator::release(&db, id, &actor).await?),
            OperatorCommand::Intents(IntentsAction::Cancel { id }) => describe_intent(&operator::cancel(&db, id, &actor).await?),
            OperatorCommand::Pause(paused) => {
                crate::ledger::pause::set_paused(&db, paused, &actor).await?;
                serde_json::json!({ "minting_paused": paused })
            }
            OperatorCommand::Jobs(JobsAction::Run { job: job @ (Job::AuroraSync | Job::TribeSync | Job::PurgeBodies | Job::Cleanup) }) => {
                use crate::schedule::JobKind;
                let kind = match job {
                    Job::AuroraSync => JobKind::AuroraSync,
                    Job::TribeSync => JobKind::TribeSync,
                    Job::Cleanup => JobKind::Cleanup,
                    _ => JobKind::PurgeBodies,
                };
                crate::schedule::run_job(kind, &db, &config, None).await?
            }
            OperatorCommand::Jobs(JobsAction::Run { job: Job::StakingRewards { as_of } }) => {
                let keys = crate::custody::MasterKeys::load(config.custody.master_key_file.as_deref()).ok();
                let as_of = as_of.map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()).unwrap_or_else(chrono::Utc::now);
                serde_json::to_value(staking::run(&db, keys.as_ref(), &config.rewards, as_of).await?)?
            }
            OperatorCommand::Reconcile(args) => {
                let (client, token) = chain(&args)?;
                let report = crate::ledger::reconcile::reconcile(&db, &client, token).await?;
                if !report.is_clean() {
                    code = ExitCode::FAILURE;
                }
                serde_json::to_value(report)?
            }
            OperatorCommand::TransactionsSummary => serde_json::to_value(crate::monitor::summary(&db).await?)?,
            OperatorCommand::User(user, args) => {
                let mut summary = crate::ledger::summary(&db, &user).await?.ok_or_else(|| CliError::Message(format!("no user {user}")))?;
                if args.rpc_url.is_some() || config.chain.is_some() {
                    let (client, token) = chain(&args)?;
                    let balance = client.token_balance(token, summary.address.parse()?).await?;
                    summary.on_chain = Some(crate::chain::format_units(balance));
                }
                serde_json::to_value(summary)?
            }
        };
        println!("{}", serde_json::to_string_pretty(&output)?);
        Ok(code)
    })
}

fn describe_intent(t: &entity::transactions::Model) -> serde_json::Value {
    serde_json::json!({
        "id": t.id, "source": t.source, "kind": t.kind, "amount": crate::chain::format_units(t.amount.parse().unwrap_or_default()),
        "status": t.status, "reason": t.reason, "note": t.last_error, "tx_hash": t.tx_hash, "created_at": t.created_at,
    })
}

fn load(dir: &std::path::Path) -> Result<Config, CliError> {
    match Config::load(dir) {
        Ok(config) => Ok(config),
        Err(errors) => Err(CliError::Message(format!("{}: {errors}", dir.display()))),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Completes on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler can be installed");
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "Shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "Shutting down"),
    }
}
