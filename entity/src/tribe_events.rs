//! Tribe event attendance: one row per (event, attendee).

use sea_orm::entity::prelude::*;

/// One attendee's attendance of one Tribe event.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tribe_events")]
pub struct Model {
    /// Tribe's event id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tribe_event_id: String,
    /// Tribe's member id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub attendee_id: String,
    /// `wisdom_circle`, `workshop`, `networking`, or another type.
    pub event_type: String,
    /// Whether the member attended (no reward when not).
    pub attended: bool,
    /// HNV rewarded (decimal string; `0` when none).
    pub amount: String,
    /// When it was processed.
    pub created_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
