//! Which intents a signed attempt executes: a batch carries 1..B intents of
//! one kind, and every attempt at its nonce (each replacement) carries the
//! same ones.

use sea_orm::entity::prelude::*;

/// One intent of one attempt.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tx_attempt_intents")]
pub struct Model {
    /// The attempt (`tx_attempts.id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub attempt_id: Uuid,
    /// The intent (`transactions.id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub transaction_id: Uuid,
    /// Its place in the call's arrays, from 0.
    pub position: i32,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
