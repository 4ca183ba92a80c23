//! Hi.Events event statuses: the newest update (as a UTC instant) wins.

use sea_orm::entity::prelude::*;

/// The status of one ticketed event.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ticketing_status")]
pub struct Model {
    /// Hi.Events' event id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: String,
    /// `active`, `setup` or `inactive`.
    pub status: String,
    /// The status as Hi.Events sent it (`LIVE`, `DRAFT`, …).
    pub partner_status: String,
    /// The update's time, in UTC; an older update changes nothing.
    pub updated_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
