//! Mint limit counters: base units minted per scope (`total`, `user:{ref}`) and UTC day.

use sea_orm::entity::prelude::*;

/// Usage of one limit on one day.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mint_counters")]
pub struct Model {
    /// `total` or `user:{external ref}`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    /// The UTC date, `YYYY-MM-DD`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: String,
    /// Base units counted (decimal string), updated by compare-and-set.
    pub used: String,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
