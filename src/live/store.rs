//! Reading and trimming the `stream_events` journal (the triggers of
//! migration `m20261129_000050` write it).

use chrono::{DateTime, Utc};
use entity::stream_events;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

/// The journal rows after `after`, oldest id first, at most `limit`.
pub async fn after(db: &impl ConnectionTrait, after: i64, limit: u64) -> Result<Vec<stream_events::Model>, DbErr> {
    stream_events::Entity::find()
        .filter(stream_events::Column::Id.gt(after))
        .order_by_asc(stream_events::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// The highest id of the rows written before `cutoff` (0 when none): where
/// a client without `Last-Event-ID` starts, so the changes of the last
/// moments (whose ids may still be uncommitted) reach it under the gap rule.
pub async fn newest_before(db: &impl ConnectionTrait, cutoff: DateTime<Utc>) -> Result<i64, DbErr> {
    let row = stream_events::Entity::find()
        .filter(stream_events::Column::CreatedAt.lt(cutoff))
        .order_by_desc(stream_events::Column::Id)
        .one(db)
        .await?;
    Ok(row.map_or(0, |row| row.id))
}

/// Deletes journal rows written before `before`; returns how many.
pub async fn purge_before(db: &impl ConnectionTrait, before: DateTime<Utc>) -> Result<u64, DbErr> {
    let purged = stream_events::Entity::delete_many().filter(stream_events::Column::CreatedAt.lt(before)).exec(db).await?;
    Ok(purged.rows_affected)
}
