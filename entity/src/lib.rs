//! sea-orm entities of havend's database, one module per table.

pub mod webhook_events;
