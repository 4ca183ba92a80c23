//! The `havend` command line: `run`, `migrate`, `check-config`, `sign-webhook`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::config::{Config, Secret};
use crate::webhooks::{Partner, Scheme};

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
pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig { dir } => match Config::load(&dir) {
            Ok(config) => {
                print!("{}", config.to_redacted_toml());
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                eprintln!("{}: {errors}", dir.display());
                Ok(ExitCode::FAILURE)
            }
        },
        Command::SignWebhook { partner, secret, body, scheme, timestamp, id } => {
            let body = std::fs::read(&body).with_context(|| format!("cannot read {}", body.display()))?;
            let scheme = scheme.map(Scheme::from).unwrap_or(partner.default_scheme());
            let timestamp = timestamp.unwrap_or_else(|| chrono::Utc::now().timestamp());
            let id = id.unwrap_or_else(|| format!("msg_{}", uuid::Uuid::new_v4().simple()));
            let headers = scheme
                .sign(partner, &Secret::new(secret), &body, timestamp, &id)
                .map_err(|problem| anyhow::anyhow!("bad secret: {problem}"))?;
            println!("Content-Type: application/json");
            for (name, value) in headers {
                println!("{name}: {value}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            let config = load(&config)?;
            crate::telemetry::init(&config.log);
            runtime()?.block_on(async {
                let listener = tokio::net::TcpListener::bind(config.server.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", config.server.listen))?;
                crate::run(config, listener, shutdown_signal()).await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Migrate { config, action } => {
            let config = load(&config)?;
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
    }
}

fn load(dir: &std::path::Path) -> anyhow::Result<Config> {
    match Config::load(dir) {
        Ok(config) => Ok(config),
        Err(errors) => bail!("{}: {errors}", dir.display()),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
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
