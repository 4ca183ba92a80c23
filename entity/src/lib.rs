//! sea-orm entities of havend's database, one module per table.

pub mod alerts;
pub mod foreign_nonces;
pub mod transactions;
pub mod tx_attempts;
pub mod users;
pub mod wallet_audit_logs;
pub mod wallets;
pub mod webhook_events;
