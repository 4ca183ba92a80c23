//! Aurora bookings as havend knows them: what was booked, and whether its
//! reward still stands.

use sea_orm::entity::prelude::*;

/// One booking (or the tombstone of a cancellation that came first).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "aurora_bookings")]
pub struct Model {
    /// Aurora's booking id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub booking_id: String,
    /// `aurora:{guest_id}`; unknown until `booking-created` arrives.
    pub guest_ref: Option<String>,
    /// Total price in CAD, as sent (exact decimal string).
    pub total_price: Option<String>,
    /// Nights booked.
    pub nights: Option<i64>,
    /// `created`, `completed` or `cancelled`.
    pub status: String,
    /// The intent that rewarded it.
    pub mint_intent: Option<Uuid>,
    /// When havend first heard of it.
    pub created_at: DateTimeUtc,
    /// When it last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
