//! Where running parts of the actor tree are published for the modules that
//! read them (the listener, operators): the supervisor fills the slots, the
//! readers import only this, not the supervisor.

use std::sync::Arc;

use alloy::primitives::Address;
use arc_swap::ArcSwapOption;
use ractor::ActorRef;

use crate::breaker::BreakerHandle;
use crate::chain::ChainClient;
use crate::chain_health::ChainHealthSlot;
use crate::wallet::RegistryMsg;

/// The running chain side, for the listener and operators.
pub struct ChainHandles {
    /// RPC client.
    pub client: ChainClient,
    /// The token contract.
    pub token: Address,
    /// The RPC breaker.
    pub breaker: BreakerHandle,
    /// The wallet registry.
    pub registry: ActorRef<RegistryMsg>,
    /// The chain's last health reading, refreshed in the background.
    pub health: ChainHealthSlot,
}

/// Where the chain handles are published (empty without a `[chain]` config).
pub type ChainSlot = Arc<ArcSwapOption<ChainHandles>>;
