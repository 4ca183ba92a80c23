//! Operations of the token's admin key, which lives outside the daemon
//! (in dev mode: anvil's first account): deploying HAVEN, granting a hot
//! wallet its roles, funding it with gas. Used by `havend dev`, the
//! `havend wallet grant-roles` command and tests.

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;

use super::{HavenToken, HavenTokenSingle};

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
#[error("admin operation {operation} failed: {message}")]
pub struct AdminError {
    /// What was attempted.
    pub operation: &'static str,
    /// Why.
    pub message: String,
}

fn failed(operation: &'static str) -> impl Fn(String) -> AdminError {
    move |message| AdminError { operation, message }
}

fn provider(rpc_url: &str, admin: &PrivateKeySigner) -> Result<impl Provider + Clone, AdminError> {
    let url = rpc_url.parse::<alloy::transports::http::reqwest::Url>().map_err(|e| failed("connect")(e.to_string()))?;
    Ok(ProviderBuilder::new().wallet(EthereumWallet::from(admin.clone())).connect_http(url))
}

/// Deploys HAVEN with `admin` holding `DEFAULT_ADMIN_ROLE`; returns its address.
pub async fn deploy_token(rpc_url: &str, admin: &PrivateKeySigner) -> Result<Address, AdminError> {
    let provider = provider(rpc_url, admin)?;
    let token = HavenToken::deploy(provider, admin.address()).await.map_err(|e| failed("deploy")(e.to_string()))?;
    Ok(*token.address())
}

/// Deploys the single-intent HAVEN (`chain.token_abi = "single"`), as
/// deployments made before batches run it; returns its address.
pub async fn deploy_single_token(rpc_url: &str, admin: &PrivateKeySigner) -> Result<Address, AdminError> {
    let provider = provider(rpc_url, admin)?;
    let token = HavenTokenSingle::deploy(provider, admin.address()).await.map_err(|e| failed("deploy")(e.to_string()))?;
    Ok(*token.address())
}

/// Grants `wallet` the minter and burner roles (either token: their roles are the same).
pub async fn grant_roles(rpc_url: &str, admin: &PrivateKeySigner, token: Address, wallet: Address) -> Result<(), AdminError> {
    let provider = provider(rpc_url, admin)?;
    let contract = HavenToken::new(token, provider);
    let error = failed("grant_roles");
    let minter = contract.MINTER_ROLE().call().await.map_err(|e| error(e.to_string()))?;
    let burner = contract.BURNER_ROLE().call().await.map_err(|e| error(e.to_string()))?;
    for role in [minter, burner] {
        contract
            .grantRole(role, wallet)
            .send()
            .await
            .map_err(|e| error(e.to_string()))?
            .get_receipt()
            .await
            .map_err(|e| error(e.to_string()))?;
    }
    Ok(())
}

/// Sends `amount` wei of the native coin from `admin` to `to`.
pub async fn fund(rpc_url: &str, admin: &PrivateKeySigner, to: Address, amount: U256) -> Result<(), AdminError> {
    let provider = provider(rpc_url, admin)?;
    let tx = TransactionRequest::default().to(to).value(amount);
    provider
        .send_transaction(tx)
        .await
        .map_err(|e| failed("fund")(e.to_string()))?
        .get_receipt()
        .await
        .map_err(|e| failed("fund")(e.to_string()))?;
    Ok(())
}
