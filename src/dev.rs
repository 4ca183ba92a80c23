//! `havend dev`: a working daemon on a fresh machine in one command.
//!
//! SQLite in the data directory, no Redis, a local anvil (installed through
//! npm when missing) with HAVEN deployed, a hot wallet created, funded and
//! granted its roles by anvil's first account (the token admin in dev), and
//! a ready-to-paste signed curl example. The chain state is kept in the data
//! directory, so a restart finds its token and balances again.

use std::path::{Path, PathBuf};

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder, ext::AnvilApi};
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};

use crate::chain::{self, admin};
use crate::config::{ChainConfig, Config, Secret};
use crate::custody::{self, MasterKeys};
use crate::webhooks::Partner;

/// Why dev mode could not prepare its setup or print its banner.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// A step that failed without an error of its own (no chain, no anvil binary, an RPC client or a signature that cannot be made).
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
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A JSON file could not be read or written.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The `[chain]` made for anvil did not parse.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// The master key or a wallet failed.
    #[error(transparent)]
    Custody(#[from] custody::CustodyError),
    /// The database could not be opened.
    #[error(transparent)]
    DbOpen(#[from] crate::db::DbError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    /// A wallet's address is not an address.
    #[error(transparent)]
    Address(#[from] alloy::hex::FromHexError),
    /// anvil's RPC URL is not a URL.
    #[error(transparent)]
    Url(<reqwest::Url as std::str::FromStr>::Err),
    /// anvil did not answer an RPC call.
    #[error(transparent)]
    Rpc(#[from] alloy::transports::TransportError),
    /// Deploying the token or granting roles failed.
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    /// The hot wallet could not be activated.
    #[error(transparent)]
    Lifecycle(#[from] crate::wallet::lifecycle::LifecycleError),
    /// The task starting anvil did not finish.
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),
}

impl DevError {
    /// `message` about `source`, as `.context(message)` said it.
    fn context(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> DevError {
        DevError::Context { message: message.into(), source: Box::new(source) }
    }
}

/// Native coin given to the dev hot wallet for gas (1,000 ETH).
const DEV_GAS_FUNDS: u128 = 1_000 * 10u128.pow(18);

/// Name of the token-scope API key dev mode makes.
pub const DEV_TOKEN_KEY_NAME: &str = "dev-token";
/// Name of the admin-scope API key dev mode makes.
pub const DEV_ADMIN_KEY_NAME: &str = "dev-admin";
/// Where dev mode keeps its API keys in clear (mode 0600), in the data directory.
const DEV_API_KEYS_FILE: &str = "dev-api-keys.json";

/// The API keys dev mode made once and keeps in the data directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevApiKeys {
    /// Token scope: mints, redemptions, users, transactions.
    pub token: String,
    /// Admin scope.
    pub admin: String,
}

impl DevApiKeys {
    /// The keys from an earlier run, or new random ones written to `data_dir`.
    pub fn load_or_create(data_dir: &Path) -> Result<DevApiKeys, DevError> {
        let file = data_dir.join(DEV_API_KEYS_FILE);
        if let Ok(text) = std::fs::read_to_string(&file) {
            return serde_json::from_str(&text).map_err(|e| DevError::context(format!("cannot read {}", file.display()), e));
        }
        let random = || format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let keys = DevApiKeys { token: format!("hv_tok_{}", random()), admin: format!("hv_adm_{}", random()) };
        write_private(&file, &serde_json::to_string_pretty(&keys)?)?;
        Ok(keys)
    }

    /// Adds both keys (hashed) to `config` where its files name no key of the same name.
    pub fn install(&self, config: &mut Config) {
        use crate::config::{ApiKey, Scope};
        config.api_keys.entry(DEV_TOKEN_KEY_NAME.into()).or_insert_with(|| ApiKey::from_raw(&self.token, Scope::Token));
        config.api_keys.entry(DEV_ADMIN_KEY_NAME.into()).or_insert_with(|| ApiKey::from_raw(&self.admin, Scope::Admin));
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), DevError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| DevError::context(format!("cannot create {}", path.display()), e))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// What dev mode remembers between runs.
#[derive(Debug, Serialize, Deserialize)]
struct DevChain {
    token: Address,
}

/// Prepares the dev environment around `config`; returns the config to run
/// with and the anvil to keep alive (None when `[chain]` was configured).
pub async fn prepare(mut config: Config) -> Result<(Config, Option<AnvilInstance>), DevError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| DevError::context(format!("cannot create {}", config.data_dir.display()), e))?;
    let key_file = config.custody.master_key_file.clone().unwrap_or_else(|| config.data_dir.join("master.key"));
    if std::env::var(custody::MASTER_KEY_ENV).is_err() {
        // Dev mode only: created once, never replaced.
        MasterKeys::create_dev_file(&key_file)?;
        config.custody.master_key_file = Some(key_file.clone());
    }
    DevApiKeys::load_or_create(&config.data_dir)?.install(&mut config);
    if config.chain.is_some() {
        return Ok((config, None));
    }
    let anvil = start_anvil(&config.data_dir.join("anvil-state.json")).await?;
    let rpc_url = anvil.endpoint();
    let admin_key = PrivateKeySigner::from(anvil.keys()[0].clone());
    let keys = MasterKeys::load(config.custody.master_key_file.as_deref())?;

    let db = crate::db::connect(&config).await?;
    crate::db::migrate_up(&db).await?;
    let token = dev_token(&config.data_dir, &rpc_url, &admin_key).await?;
    let hot = match custody::list_hot(&db).await?.into_iter().find(|w| [custody::ACTIVE, custody::STANDBY].contains(&w.status.as_str())) {
        Some(wallet) => wallet,
        None => custody::create_wallet(&db, &keys, custody::HOT, "havend dev").await?,
    };
    let hot_address: Address = hot.address.parse()?;
    let provider = ProviderBuilder::new().connect_http(rpc_url.parse().map_err(DevError::Url)?);
    provider.anvil_set_balance(hot_address, U256::from(DEV_GAS_FUNDS)).await?;
    admin::grant_roles(&rpc_url, &admin_key, token, hot_address).await?;
    if hot.status == custody::STANDBY {
        let client = chain::ChainClient::new(&rpc_url, std::time::Duration::from_secs(10)).map_err(DevError::Message)?;
        crate::wallet::lifecycle::activate_checked(&db, &client, token, U256::from(DEV_GAS_FUNDS), &hot, "havend dev").await?;
    }
    db.close().await.ok();

    let chain_id = provider.get_chain_id().await?;
    let mut chain: ChainConfig = toml::from_str(&format!("rpc_url = {rpc_url:?}\ntoken = \"{token}\"\nchain_id = {chain_id}\n"))?;
    chain.wallets = vec![hot_address];
    chain.max_in_flight = 256;
    config.chain = Some(chain);
    Ok((config, Some(anvil)))
}

/// What a reload must put back into a config read from the files: the
/// `[chain]` and the master key file [`prepare`] made in memory (each only
/// where the files leave it unset, as `prepare` does).
pub fn overlay(prepared: &Config) -> impl Fn(&mut Config) + Send + Sync + 'static {
    let chain = prepared.chain.clone();
    let key_file = prepared.custody.master_key_file.clone();
    let api_keys = DevApiKeys::load_or_create(&prepared.data_dir).ok();
    move |config: &mut Config| {
        if let Some(api_keys) = &api_keys {
            api_keys.install(config);
        }
        if config.chain.is_none() {
            config.chain = chain.clone();
        }
        if config.custody.master_key_file.is_none() {
            config.custody.master_key_file = key_file.clone();
        }
    }
}

/// Starts anvil with its state kept in `state` (loaded if present, saved every second).
async fn start_anvil(state: &Path) -> Result<AnvilInstance, DevError> {
    let path = chain::anvil::locate().map_err(DevError::Message)?;
    let state = state.to_owned();
    tokio::task::spawn_blocking(move || {
        Anvil::at(path)
            .port(0u16)
            .block_time(1)
            .args(["--gas-limit", "3000000000", "--state-interval", "1", "--state"])
            .arg(state)
            .try_spawn()
    })
    .await?
    .map_err(|e| DevError::context("cannot start anvil", e))
}

/// The token from an earlier run if the chain still has it, else a new deployment.
async fn dev_token(data_dir: &Path, rpc_url: &str, admin_key: &PrivateKeySigner) -> Result<Address, DevError> {
    let file: PathBuf = data_dir.join("dev-chain.json");
    let provider = ProviderBuilder::new().connect_http(rpc_url.parse().map_err(DevError::Url)?);
    if let Ok(text) = std::fs::read_to_string(&file) {
        let saved: DevChain = serde_json::from_str(&text)?;
        if !provider.get_code_at(saved.token).await?.is_empty() {
            return Ok(saved.token);
        }
    }
    let token = admin::deploy_token(rpc_url, admin_key).await?;
    std::fs::write(&file, serde_json::to_string_pretty(&DevChain { token })?)?;
    Ok(token)
}

/// The banner `havend dev` prints: where things are and a signed curl to paste.
pub fn banner(config: &Config) -> Result<String, DevError> {
    let Some(chain) = &config.chain else { return Err(DevError::Message("no chain configured".into())) };
    let listen = config.server.listen;
    let mut out = format!(
        "havend dev is ready\n  listening    http://{listen}\n  database     {}\n  chain        {} (chain id {})\n  token        {}\n  hot wallet   {}\n",
        crate::redact::password_in(config.database_url().expose()),
        crate::redact::rpc_url(&chain.rpc_url),
        chain.chain_id,
        chain.token,
        chain.wallets.first().map(ToString::to_string).unwrap_or_default(),
    );
    if let Some(aurora) = config.partners.get(&Partner::Aurora).and_then(|p| p.secrets.first()) {
        let body = format!(r#"{{"id":"bk_{}","guest_id":"guest_001","total_price":"330.50","nights":2}}"#, &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let headers = crate::webhooks::Scheme::HavenHmac
            .sign(Partner::Aurora, &Secret::new(aurora.expose()), body.as_bytes(), chrono::Utc::now().timestamp(), "")
            .map_err(DevError::Message)?;
        let header_args: String = headers.iter().map(|(n, v)| format!(" -H '{n}: {v}'")).collect();
        out.push_str(&format!(
            "\nSend a signed booking (valid for 5 minutes):\n  curl -sS -H 'Content-Type: application/json'{header_args} --data '{body}' http://{listen}/webhooks/aurora/booking-created\n"
        ));
        // The local anvil's URL carries no secret; a configured one may, and
        // `havend user --config` reads it from the config instead.
        let chain_args = if chain.rpc_url.starts_with("http://127.0.0.1:") || chain.rpc_url.starts_with("http://localhost:") {
            format!(" --rpc-url {} --token {}", chain.rpc_url, chain.token)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "\nA block or two later the guest holds 793.2 HNV (330.50 CAD x 2 HNV/CAD x 1.2 for 2 nights):\n  havend user aurora:guest_001{chain_args}\n"
        ));
        if let Ok(api_keys) = DevApiKeys::load_or_create(&config.data_dir) {
            out.push_str(&format!(
                "\nAPI keys (kept in {data}/{DEV_API_KEYS_FILE}): token {token}, admin {admin}\n\
                 Then mint 25 HNV more through the token API (202; sending it again with the same Idempotency-Key replays the answer and mints nothing more):\n  \
                 curl -sS -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -H 'Idempotency-Key: welcome-guest_001' \
                 --data '{{\"user\":\"aurora:guest_001\",\"amount\":\"25\",\"reason\":\"welcome bonus\"}}' http://{listen}/api/v1/token/mint\n",
                data = config.data_dir.display(),
                token = api_keys.token,
                admin = api_keys.admin,
            ));
        }
    }
    Ok(out)
}
