//! Tribe rewards other than attendance: contributions, coaching milestones, referrals.

use sea_orm::entity::prelude::*;

/// One rewarded Tribe action.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tribe_rewards")]
pub struct Model {
    /// `contribution`, `coaching` or `referral`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    /// Tribe's id of the action.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tribe_id: String,
    /// `tribe:{member}` rewarded.
    pub user_ref: String,
    /// The quality score, milestone or tier the amount came from.
    pub detail: String,
    /// HNV rewarded (decimal string).
    pub amount: String,
    /// When it was processed.
    pub created_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
