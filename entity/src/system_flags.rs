//! Switches every daemon sharing the database obeys (e.g. `minting_paused`).

use sea_orm::entity::prelude::*;

/// One switch.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "system_flags")]
pub struct Model {
    /// The switch's name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// Its value (`true` / `false` for booleans).
    pub value: String,
    /// Who set it last.
    pub updated_by: String,
    /// When.
    pub updated_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
