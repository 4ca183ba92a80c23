//! havend's integration tests: the real listener over HTTP against real
//! PostgreSQL and SQLite (and the real binary for the CLI).

mod support;

mod admin;
mod alerts;
mod batches;
mod binary;
mod chain;
mod crash;
mod guards;
mod intake;
mod layering;
mod monitor;
mod openapi;
mod onchain_batches;
mod ops;
mod poison;
mod processing;
mod refusals;
mod reload;
mod resilience;
mod rewards;
mod schedule;
mod sessions;
mod signatures;
mod stream;
mod token;
mod validation;
