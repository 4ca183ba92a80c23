//! The minting pause: a database switch every wallet actor reads inside its
//! reserve transaction, so a pause stops signing on every daemon sharing the
//! database while intake and processing go on.

use entity::system_flags;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait};
use serde_json::json;

use crate::alert::{self, Severity};

/// The switch's name in `system_flags`.
pub const MINTING_PAUSED: &str = "minting_paused";

/// Pauses (true) or resumes (false) signing of new work on every daemon.
pub async fn set_paused(db: &impl ConnectionTrait, paused: bool, actor: &str) -> Result<(), DbErr> {
    super::set_system_flag(db, MINTING_PAUSED, paused.to_string(), actor).await?;
    let (severity, what) = if paused { (Severity::Warning, "paused") } else { (Severity::Info, "resumed") };
    alert::raise(db, severity, "minting_paused", &format!("Minting {what} by {actor}"), json!({ "paused": paused, "actor": actor })).await;
    Ok(())
}

/// Whether minting is paused; read inside each wallet's reserve transaction.
pub async fn is_paused(db: &impl ConnectionTrait) -> Result<bool, DbErr> {
    let row = system_flags::Entity::find_by_id(MINTING_PAUSED.to_owned()).one(db).await?;
    Ok(row.is_some_and(|r| r.value == "true"))
}

