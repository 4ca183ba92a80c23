//! Idempotency keys in the database: the claim (a row with a lease token),
//! the commit-time check that the claim still holds, the stored response and
//! the clean-up of expired keys. Every function takes `&impl ConnectionTrait`
//! so the commit-time steps run inside the caller's transaction.

use std::time::Duration;

use chrono::Utc;
use entity::idempotency_keys;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set, TryInsertResult};
use uuid::Uuid;

use super::{Decision, Seen, StoredResponse, decide};

/// Attempts at claiming before a key that keeps changing hands counts as in flight.
const CLAIM_ATTEMPTS: usize = 3;

/// A key this request holds: its commit must present the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The API key's name.
    pub api_key: String,
    /// The Idempotency-Key.
    pub key: String,
    /// This holder's lease token.
    pub token: Uuid,
}

/// The outcome of claiming a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// This request holds the key and must run.
    Owned(Claim),
    /// Another request has it: replay, refuse (422) or 409; with the row's expiry.
    Decided(Decision, chrono::DateTime<Utc>),
}

/// Claims `key` for this request: inserts its row (`ON CONFLICT DO NOTHING`,
/// never check-then-insert) or, when the row's holder lapsed or the key
/// expired, takes it over with a compare-and-set on the holder's token.
pub async fn claim(
    db: &impl ConnectionTrait,
    api_key: &str,
    key: &str,
    fingerprint: &str,
    lease: Duration,
    ttl: Duration,
) -> Result<Claimed, DbErr> {
    for _ in 0..CLAIM_ATTEMPTS {
        let now = Utc::now();
        let token = Uuid::new_v4();
        let claim = Claim { api_key: api_key.to_owned(), key: key.to_owned(), token };
        let row = idempotency_keys::ActiveModel {
            api_key: Set(api_key.to_owned()),
            key: Set(key.to_owned()),
            fingerprint: Set(fingerprint.to_owned()),
            lease_token: Set(Some(token)),
            lease_until: Set(Some(now + lease)),
            response_status: Set(None),
            response_headers: Set(None),
            response_body: Set(None),
            created_at: Set(now),
            expires_at: Set(now + ttl),
        };
        let inserted = idempotency_keys::Entity::insert(row)
            .on_conflict_do_nothing_on([idempotency_keys::Column::ApiKey, idempotency_keys::Column::Key])
            .exec_without_returning(db)
            .await?;
        if matches!(inserted, TryInsertResult::Inserted(1)) {
            return Ok(Claimed::Owned(claim));
        }
        let Some(stored) = find(db, api_key, key).await? else { continue };
        match decide(&seen(&stored), fingerprint, now) {
            Decision::TakeOver => {
                let mut takeover = idempotency_keys::Entity::update_many()
                    .col_expr(idempotency_keys::Column::Fingerprint, Expr::value(fingerprint))
                    .col_expr(idempotency_keys::Column::LeaseToken, Expr::value(Some(token)))
                    .col_expr(idempotency_keys::Column::LeaseUntil, Expr::value(Some(now + lease)))
                    .col_expr(idempotency_keys::Column::ResponseStatus, Expr::value(Option::<i32>::None))
                    .col_expr(idempotency_keys::Column::ResponseHeaders, Expr::value(Option::<String>::None))
                    .col_expr(idempotency_keys::Column::ResponseBody, Expr::value(Option::<String>::None))
                    .col_expr(idempotency_keys::Column::CreatedAt, Expr::value(now))
                    .col_expr(idempotency_keys::Column::ExpiresAt, Expr::value(now + ttl))
                    .filter(idempotency_keys::Column::ApiKey.eq(api_key))
                    .filter(idempotency_keys::Column::Key.eq(key))
                    .filter(idempotency_keys::Column::CreatedAt.eq(stored.created_at));
                takeover = match stored.lease_token {
                    Some(old) => takeover.filter(idempotency_keys::Column::LeaseToken.eq(old)),
                    None => takeover.filter(idempotency_keys::Column::LeaseToken.is_null()),
                };
                if takeover.exec(db).await?.rows_affected == 1 {
                    return Ok(Claimed::Owned(claim));
                }
            }
            decision => return Ok(Claimed::Decided(decision, stored.expires_at)),
        }
    }
    Ok(Claimed::Decided(Decision::InFlight, Utc::now()))
}

/// Inside the work's transaction, before any of its writes: true while the
/// claim holds, renewing its lease. On PostgreSQL the update also locks the
/// row until commit, so no other request can take the key over meanwhile.
pub async fn hold(txn: &impl ConnectionTrait, claim: &Claim, lease: Duration) -> Result<bool, DbErr> {
    let renewed = idempotency_keys::Entity::update_many()
        .col_expr(idempotency_keys::Column::LeaseUntil, Expr::value(Some(Utc::now() + lease)))
        .filter(held_by(claim))
        .exec(txn)
        .await?;
    Ok(renewed.rows_affected == 1)
}

/// Inside the work's transaction, as its last write: stores the response
/// and ends the claim; false when the claim no longer holds (the caller
/// must roll back).
pub async fn complete(txn: &impl ConnectionTrait, claim: &Claim, response: &StoredResponse) -> Result<bool, DbErr> {
    let headers = serde_json::to_string(&response.headers).map_err(|e| DbErr::Custom(e.to_string()))?;
    let done = idempotency_keys::Entity::update_many()
        .col_expr(idempotency_keys::Column::ResponseStatus, Expr::value(Some(i32::from(response.status))))
        .col_expr(idempotency_keys::Column::ResponseHeaders, Expr::value(Some(headers)))
        .col_expr(idempotency_keys::Column::ResponseBody, Expr::value(Some(response.body.clone())))
        .col_expr(idempotency_keys::Column::LeaseToken, Expr::value(Option::<Uuid>::None))
        .col_expr(idempotency_keys::Column::LeaseUntil, Expr::value(Option::<chrono::DateTime<Utc>>::None))
        .filter(held_by(claim))
        .exec(txn)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Frees a key whose request executed nothing (a failure before its commit),
/// so a retry runs.
pub async fn release(db: &impl ConnectionTrait, claim: &Claim) -> Result<(), DbErr> {
    idempotency_keys::Entity::delete_many().filter(held_by(claim)).exec(db).await?;
    Ok(())
}

/// The stored response of a completed key (with its fingerprint), for the cache.
pub async fn find(db: &impl ConnectionTrait, api_key: &str, key: &str) -> Result<Option<idempotency_keys::Model>, DbErr> {
    idempotency_keys::Entity::find_by_id((api_key.to_owned(), key.to_owned())).one(db).await
}

/// Deletes keys past their expiry; returns how many.
pub async fn purge_expired(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let purged = idempotency_keys::Entity::delete_many().filter(idempotency_keys::Column::ExpiresAt.lt(Utc::now())).exec(db).await?;
    Ok(purged.rows_affected)
}

/// A stored row as the pure [`decide`] sees it.
pub fn seen(row: &idempotency_keys::Model) -> Seen {
    let response = row.response_status.map(|status| StoredResponse {
        status: u16::try_from(status).unwrap_or(500),
        headers: row.response_headers.as_deref().and_then(|h| serde_json::from_str(h).ok()).unwrap_or_default(),
        body: row.response_body.clone().unwrap_or_default(),
    });
    Seen { fingerprint: row.fingerprint.clone(), lease_until: row.lease_until, response, expires_at: row.expires_at }
}

fn held_by(claim: &Claim) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(idempotency_keys::Column::ApiKey.eq(claim.api_key.as_str()))
        .add(idempotency_keys::Column::Key.eq(claim.key.as_str()))
        .add(idempotency_keys::Column::LeaseToken.eq(claim.token))
        .add(idempotency_keys::Column::ResponseStatus.is_null())
}
