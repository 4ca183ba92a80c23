//! Cross-app sessions in the database: created with their token's hash,
//! found only while unexpired, and purged once expired.

use chrono::{DateTime, Utc};
use entity::cross_app_sessions;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};

use super::hash_token;

/// Stores a session for `token` (hashed) and returns its row.
pub async fn create(
    db: &impl ConnectionTrait,
    token: &str,
    user_ref: &str,
    api_key: &str,
    now: DateTime<Utc>,
    ttl: chrono::Duration,
) -> Result<cross_app_sessions::Model, DbErr> {
    cross_app_sessions::ActiveModel {
        token_hash: Set(hash_token(token)),
        user_ref: Set(user_ref.to_owned()),
        api_key: Set(api_key.to_owned()),
        created_at: Set(now),
        expires_at: Set(now + ttl),
    }
    .insert(db)
    .await
}

/// The session of `token` if it exists and has not expired at `now`.
pub async fn find_valid(db: &impl ConnectionTrait, token: &str, now: DateTime<Utc>) -> Result<Option<cross_app_sessions::Model>, DbErr> {
    let row = cross_app_sessions::Entity::find_by_id(hash_token(token)).one(db).await?;
    // Compared in Rust rather than SQL: SQLite stores timestamps as text.
    Ok(row.filter(|session| session.expires_at > now))
}

/// Deletes sessions that expired before `now`; returns how many.
pub async fn purge_expired(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let purged = cross_app_sessions::Entity::delete_many().filter(cross_app_sessions::Column::ExpiresAt.lt(now)).exec(db).await?;
    Ok(purged.rows_affected)
}
