//! sea-orm entities of havend's database, one module per table.

pub mod alert_logs;
pub mod alert_throttles;
pub mod alerts;
pub mod audit_log;
pub mod aurora_bookings;
pub mod cross_app_sessions;
pub mod foreign_nonces;
pub mod error_logs;
pub mod idempotency_keys;
pub mod mint_counters;
pub mod redemption_requests;
pub mod staking_records;
pub mod stream_events;
pub mod sync_state;
pub mod system_flags;
pub mod ticketing_status;
pub mod transactions;
pub mod tribe_events;
pub mod tribe_rewards;
pub mod tx_attempt_intents;
pub mod tx_attempts;
pub mod users;
pub mod wallet_audit_logs;
pub mod wallets;
pub mod webhook_events;
