//! Redemption requests: HNV burned from a user's wallet for a fiat payout.

use sea_orm::entity::prelude::*;

/// One redemption.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "redemption_requests")]
pub struct Model {
    /// The redemption id (Stripe payouts name it in `metadata.redemption_id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The user who redeems.
    pub user_id: Uuid,
    /// The burn intent (`transactions`); the payout is due only once it is confirmed.
    pub burn_id: Uuid,
    /// Base units burned (decimal string).
    pub amount: String,
    /// Where the money goes, as the client sent it (JSON).
    pub payout: String,
    /// `open` (awaiting payout), `paid` or `failed`.
    pub status: String,
    /// The re-credit mint after a failed payout, if one was owed.
    pub recredit_id: Option<Uuid>,
    /// The Stripe event that settled or failed it.
    pub payout_event: Option<String>,
    /// When it was requested.
    pub created_at: DateTimeUtc,
    /// Last status change.
    pub updated_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
