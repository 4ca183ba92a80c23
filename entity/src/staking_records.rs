//! Stakes reported by Tribe; the weekly staking job pays their yield.

use sea_orm::entity::prelude::*;

/// One stake.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "staking_records")]
pub struct Model {
    /// Tribe's stake id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub stake_id: String,
    /// `tribe:{member}` who staked.
    pub user_ref: String,
    /// HNV staked (decimal string).
    pub amount: String,
    /// `active` (earning).
    pub status: String,
    /// When the stake started earning.
    pub started_at: DateTimeUtc,
    /// When havend recorded it.
    pub created_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
