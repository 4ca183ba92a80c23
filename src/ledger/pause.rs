//! The minting pause: a database switch every wallet actor reads inside its
//! reserve transaction, so a pause stops signing on every daemon sharing the
//! database while intake and processing go on.

use entity::system_flags;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QuerySelect};
use serde_json::json;

use crate::alert::{self, Severity};

/// The switch's name in `system_flags`.
pub const MINTING_PAUSED: &str = "minting_paused";

/// Pauses (true) or resumes (false) signing of new work on every daemon.
/// A pause returns only after every reserve transaction that read "not
/// paused" has committed (see [`is_paused_for_signing`]).
pub async fn set_paused(db: &impl ConnectionTrait, paused: bool, actor: &str) -> Result<(), DbErr> {
    super::set_system_flag(db, MINTING_PAUSED, paused.to_string(), actor).await?;
    let (severity, what) = if paused { (Severity::Warning, "paused") } else { (Severity::Info, "resumed") };
    alert::raise(db, severity, "minting_paused", &format!("Minting {what} by {actor}"), json!({ "paused": paused, "actor": actor })).await;
    Ok(())
}

/// Whether minting is paused (a plain read, for answers and early checks).
pub async fn is_paused(db: &impl ConnectionTrait) -> Result<bool, DbErr> {
    let row = system_flags::Entity::find_by_id(MINTING_PAUSED.to_owned()).one(db).await?;
    Ok(row.is_some_and(|r| r.value == "true"))
}

/// Whether minting is paused, read by a wallet's reserve transaction under a
/// shared lock on the switch's row that lasts until it commits (PostgreSQL
/// `FOR SHARE`; SQLite serializes writers). A pause updates that row, so it
/// waits for every reserve that read "not paused" to commit, and a reserve
/// that starts after it reads "paused": once [`set_paused`] has returned,
/// nothing more is signed. The row exists from the migrations on (a
/// missing row cannot be locked).
pub async fn is_paused_for_signing(txn: &impl ConnectionTrait) -> Result<bool, DbErr> {
    let row = system_flags::Entity::find_by_id(MINTING_PAUSED.to_owned()).lock_shared().one(txn).await?;
    Ok(row.is_some_and(|r| r.value == "true"))
}

