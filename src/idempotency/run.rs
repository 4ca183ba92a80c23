//! The idempotency state machine around one keyed write, apart from any
//! endpoint (as Svix keeps its idempotency apart from its handlers): answer
//! from the cache or the key's row when the key was seen, otherwise claim the
//! key, run the work and store its response in the work's own transaction
//! while the claim holds, and free the key when nothing committed.

use std::time::Duration;

use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use tracing::warn;

use super::cache::{Cache, Lookup};
use super::store::{self, Claim, Claimed};
use super::{Decision, StoredResponse};

/// One keyed request: whose key, which key, what body, and how long its claim
/// and its stored response last.
#[derive(Debug, Clone, Copy)]
pub struct Keyed<'a> {
    /// The API key's name: keys are scoped per caller.
    pub caller: &'a str,
    /// The Idempotency-Key.
    pub key: &'a str,
    /// The request's fingerprint ([`fingerprint`](super::fingerprint)).
    pub fingerprint: &'a str,
    /// How long a claim holds the key without committing.
    pub lease: Duration,
    /// How long a completed response is replayed.
    pub ttl: Duration,
}

/// How a keyed request ended.
#[derive(Debug)]
pub enum Ran<T> {
    /// The key was seen before: its stored response, to send again.
    Replayed(StoredResponse),
    /// The work ran and committed with its response; `T` is what it returned besides.
    Done(StoredResponse, T),
}

/// Why a keyed request was not answered with a response.
#[derive(Debug, thiserror::Error)]
pub enum RunError<E> {
    /// The key was used with another body.
    #[error("the Idempotency-Key was used with another request")]
    Mismatch,
    /// Another request holds the key, or took it over while this one ran.
    #[error("a request with this Idempotency-Key is in progress")]
    InProgress,
    /// The key's row could not be read or written.
    #[error(transparent)]
    Db(#[from] DbErr),
    /// The work failed; nothing committed and the key was freed.
    #[error("{0}")]
    Work(E),
}

/// Runs `work` at most once per key: a replay or a refusal when the key was
/// seen, otherwise the work inside a write transaction that also stores its
/// response, committed only while this request's claim holds.
pub async fn run_once<T, E, W>(db: &DatabaseConnection, cache: &Cache, keyed: Keyed<'_>, work: W) -> Result<Ran<T>, RunError<E>>
where
    W: AsyncFnOnce(&DatabaseTransaction) -> Result<(StoredResponse, T), E>,
{
    if let Some(answer) = seen_before(db, cache, keyed).await? {
        return Ok(Ran::Replayed(answer));
    }
    let claim = match store::claim(db, keyed.caller, keyed.key, keyed.fingerprint, keyed.lease, keyed.ttl).await? {
        Claimed::Owned(claim) => claim,
        Claimed::Decided(Decision::Replay(response), expires_at) => {
            cache.store(keyed.caller, keyed.key, keyed.fingerprint, &response, remaining(expires_at)).await;
            return Ok(Ran::Replayed(response));
        }
        Claimed::Decided(Decision::Mismatch, _) => return Err(RunError::Mismatch),
        Claimed::Decided(_, _) => return Err(RunError::InProgress),
    };
    cache.mark_in_flight(keyed.caller, keyed.key, keyed.lease).await;
    if let Some(stall) = stall_for_test(keyed.key) {
        tokio::time::sleep(stall).await;
    }
    match commit(db, &claim, keyed.lease, work).await {
        Ok((response, extra)) => {
            cache.store(keyed.caller, keyed.key, keyed.fingerprint, &response, keyed.ttl).await;
            Ok(Ran::Done(response, extra))
        }
        Err(error) => {
            // Nothing committed: free the key so a retry runs (a no-op when
            // another request took it over).
            if let Err(release_error) = store::release(db, &claim).await {
                warn!(error = %release_error, "Cannot release an idempotency key; it frees itself when its lease ends");
            }
            cache.forget(keyed.caller, keyed.key).await;
            Err(error)
        }
    }
}

/// The answer for a key seen before, from the cache or, for an in-flight
/// mark, the key's row; `None` when the request is to claim the key.
async fn seen_before<E>(db: &DatabaseConnection, cache: &Cache, keyed: Keyed<'_>) -> Result<Option<StoredResponse>, RunError<E>> {
    match cache.lookup(keyed.caller, keyed.key).await {
        Lookup::Done { fingerprint, response } if fingerprint == keyed.fingerprint => Ok(Some(response)),
        Lookup::Done { .. } => Err(RunError::Mismatch),
        // A mark can outlive its request (a cache write lost after the
        // commit): one read of the row confirms it before answering 409.
        Lookup::InFlight => {
            let Some(row) = store::find(db, keyed.caller, keyed.key).await? else { return Ok(None) };
            match super::decide(&store::seen(&row), keyed.fingerprint, chrono::Utc::now()) {
                Decision::Replay(response) => {
                    cache.store(keyed.caller, keyed.key, keyed.fingerprint, &response, remaining(row.expires_at)).await;
                    Ok(Some(response))
                }
                Decision::Mismatch => Err(RunError::Mismatch),
                Decision::InFlight => Err(RunError::InProgress),
                Decision::TakeOver => Ok(None),
            }
        }
        Lookup::Miss => Ok(None),
    }
}

/// Runs the work and stores its response in one transaction, only while
/// the claim holds.
async fn commit<T, E, W>(db: &DatabaseConnection, claim: &Claim, lease: Duration, work: W) -> Result<(StoredResponse, T), RunError<E>>
where
    W: AsyncFnOnce(&DatabaseTransaction) -> Result<(StoredResponse, T), E>,
{
    let txn = crate::db::begin_write(db).await?;
    if !store::hold(&txn, claim, lease).await? {
        return Err(RunError::InProgress);
    }
    let (response, extra) = work(&txn).await.map_err(RunError::Work)?;
    if !store::complete(&txn, claim, &response).await? {
        return Err(RunError::InProgress);
    }
    txn.commit().await?;
    fail::fail_point!("api::after_commit", |_| std::process::abort());
    Ok((response, extra))
}

/// How long a stored response still has to live: a cache entry never
/// outlives the key's row.
fn remaining(expires_at: chrono::DateTime<chrono::Utc>) -> Duration {
    (expires_at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO)
}

/// Test hook: stalls the request holding `key` after its claim (the
/// `api::stall_after_claim` failpoint armed with `return(<key>=<ms>)`), so
/// a test can let its lease lapse while another request takes the key.
#[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))]
fn stall_for_test(key: &str) -> Option<Duration> {
    fail::fail_point!("api::stall_after_claim", |armed| crate::hooks::stall_for(armed, key));
    None
}
