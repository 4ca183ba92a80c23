//! Redemptions (SPEC sections 2 and 3): HNV burned from a user's wallet for
//! a fiat payout. The burn is an ordinary intent; the payout is due once it
//! is confirmed; Stripe's `payout.paid` settles the redemption and
//! `payout.failed` fails it, re-crediting the user once (source
//! `recredit:{redemption}`) only if the burn confirmed. A failure wins over
//! a `paid` that arrives before or after it; after a `paid` its re-credit
//! is queued held, for an operator (the money went out). A `paid` is
//! recorded at once (the money went out) and alerted when the burn has not
//! confirmed. The caller counts a new re-credit against the mint limits.
//!
//! Those rules are one pure table, [`decide`] (payout event × redemption
//! status × burn status → [`PayoutAction`]); [`apply_payout`] reads the
//! rows, asks it, and executes the action.

use chrono::Utc;
use entity::{redemption_requests, transactions, users};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, Set};
use uuid::Uuid;

use super::{BROADCAST, CANCELLED, CONFIRMED, HELD, LedgerError, NewIntent, Provenance, QUEUED, SIGNED, enqueue_with};
use crate::chain::CallKind;
use crate::custody::MasterKeys;

/// Redemption status: burned (or burning), payout not yet reported.
pub const OPEN: &str = "open";
/// Redemption status: the payout was paid.
pub const PAID: &str = "paid";
/// Redemption status: the payout failed (final).
pub const FAILED_PAYOUT: &str = "failed";

/// Records a redemption whose burn intent was just queued, in the caller's transaction.
pub async fn open(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    burn: &transactions::Model,
    payout: &serde_json::Value,
) -> Result<redemption_requests::Model, DbErr> {
    let now = Utc::now();
    let row = redemption_requests::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        burn_id: Set(burn.id),
        amount: Set(burn.amount.clone()),
        payout: Set(payout.to_string()),
        status: Set(OPEN.into()),
        recredit_id: Set(None),
        payout_event: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    redemption_requests::Entity::insert(row.clone()).exec_without_returning(db).await?;
    sea_orm::TryIntoModel::try_into_model(row)
}

/// The redemption whose burn is `burn_id`.
pub async fn by_burn(db: &impl ConnectionTrait, burn_id: Uuid) -> Result<Option<redemption_requests::Model>, DbErr> {
    redemption_requests::Entity::find().filter(redemption_requests::Column::BurnId.eq(burn_id)).one(db).await
}

/// Whether the payout may be made: a `payout.paid` now would be recorded
/// with nothing to reconcile, that is the redemption is open and its burn
/// confirmed (see [`decide`]).
pub fn payable(redemption: &redemption_requests::Model, burn_status: &str) -> bool {
    decide(PayoutEvent::Paid, &redemption.status, Some(burn_status)) == PayoutAction::MarkPaid { alert: None, record: true }
}

/// A payout event from Stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutEvent {
    /// `payout.paid`: the money went out.
    Paid,
    /// `payout.failed`: it did not.
    Failed,
}

/// What a payout event does to a redemption, as [`decide`] rules it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutAction {
    /// A `paid` after the failure: the failure stands, nothing changes.
    StaysFailed,
    /// Another `failed`: nothing changes (what was owed was given back the first time).
    AlreadyFailed,
    /// The redemption's burn is not in the ledger: the ledger is broken.
    BurnMissing,
    /// The burn is signed or on its way: decide once it settles.
    WaitForBurn,
    /// The money went out: the redemption becomes paid (when `record`),
    /// `alert` telling an operator about a burn that did not confirm.
    MarkPaid {
        /// What to raise about the burn, if anything.
        alert: Option<PaidAlert>,
        /// Whether the status is written (only an open redemption becomes paid).
        record: bool,
    },
    /// The payout failed: `undo` the redemption's burn, then the
    /// redemption becomes failed (when `record`).
    MarkFailed {
        /// How the user gets the tokens back.
        undo: Undo,
        /// Whether the status is written (only an open or paid redemption becomes failed).
        record: bool,
    },
}

/// The alert a `paid` raises about its burn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaidAlert {
    /// The burn is not confirmed yet: should it fail, the user keeps the tokens (a warning).
    BeforeBurn,
    /// The burn failed or was withdrawn: someone must reconcile by hand (an error).
    WithoutBurn,
}

/// How a failed payout gives the user's tokens back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undo {
    /// Nothing was burned: nothing is owed.
    Nothing,
    /// The burn is not signed yet: withdraw it instead of burning and minting back.
    WithdrawBurn,
    /// The burn confirmed: mint the amount back (source `recredit:{redemption}`).
    Recredit {
        /// The redemption had been reported paid: the re-credit is held for an operator.
        after_paid: bool,
    },
}

/// The payout policy as one table: what `event` does to a redemption in
/// status `redemption` whose burn is in status `burn` (`None`: no such
/// burn). Pure, so every row is tested; [`apply_payout`] reads the rows,
/// asks, and does what it is told. A redemption status this code never
/// writes is left as it is (a `failed` still undoes its burn); a burn status
/// it does not know counts as nothing burned.
pub fn decide(event: PayoutEvent, redemption: &str, burn: Option<&str>) -> PayoutAction {
    use PayoutAction::{AlreadyFailed, BurnMissing, MarkFailed, MarkPaid, StaysFailed, WaitForBurn};
    use PayoutEvent::{Failed, Paid};
    let paid_record = redemption == OPEN;
    let failed_record = matches!(redemption, OPEN | PAID);
    match (event, redemption, burn) {
        // A failure is final: it wins over a `paid` before or after it.
        (Paid, FAILED_PAYOUT, _) => StaysFailed,
        (Failed, FAILED_PAYOUT, _) => AlreadyFailed,
        (_, _, None) => BurnMissing,
        // The money went out: paid at once, never payable again, whatever the burn does next.
        (Paid, _, Some(CONFIRMED)) => MarkPaid { alert: None, record: paid_record },
        (Paid, _, Some(QUEUED | HELD | SIGNED | BROADCAST)) => MarkPaid { alert: Some(PaidAlert::BeforeBurn), record: paid_record },
        (Paid, _, Some(_)) => MarkPaid { alert: Some(PaidAlert::WithoutBurn), record: paid_record },
        // The money did not go out: the user gets the tokens back, once.
        (Failed, _, Some(QUEUED | HELD)) => MarkFailed { undo: Undo::WithdrawBurn, record: failed_record },
        (Failed, _, Some(SIGNED | BROADCAST)) => WaitForBurn,
        (Failed, _, Some(CONFIRMED)) => MarkFailed { undo: Undo::Recredit { after_paid: redemption == PAID }, record: failed_record },
        (Failed, _, Some(_)) => MarkFailed { undo: Undo::Nothing, record: failed_record },
    }
}

/// What a payout event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutOutcome {
    /// The redemption is now paid.
    Paid,
    /// A `paid` after a failure: the failure stands.
    StaysFailed,
    /// Failed; the re-credit mint (if the burn had confirmed) is `recredit`.
    Failed {
        /// The re-credit intent, when one was owed.
        recredit: Option<Box<Recredit>>,
    },
    /// A `failed` whose burn is signed or on its way: decide once it settles.
    BurnInFlight,
}

/// The mint that gives a failed payout's tokens back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recredit {
    /// The intent, as queued (its hot wallet is the one to nudge).
    pub intent: transactions::Model,
    /// Its user's `{partner}:{id}` reference (the limits count per user).
    pub user: String,
    /// Queued by this call (false: the intent existed already).
    pub created: bool,
    /// The redemption had been reported paid: the money went out, so the
    /// re-credit is held for an operator whatever the limits allow.
    pub after_paid: bool,
}

/// Why a payout event cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    /// No redemption has this id (a typo, or another system's payout).
    #[error("no redemption {0:?}")]
    Unknown(String),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<DbErr> for PayoutError {
    fn from(error: DbErr) -> Self {
        PayoutError::Ledger(LedgerError::Db(error))
    }
}

/// Applies `payout.paid` or `payout.failed` for redemption `id` (from event
/// `event_ref`) as [`decide`] rules it; a re-credit is queued with
/// `provenance` (the caller counts a new one against the mint limits, or
/// holds it: see [`Recredit`]).
pub async fn apply_payout(
    db: &impl ConnectionTrait,
    keys: Option<&MasterKeys>,
    id: &str,
    paid: bool,
    event_ref: &str,
    provenance: Provenance,
) -> Result<PayoutOutcome, PayoutError> {
    let redemption = match Uuid::parse_str(id) {
        // Locked (PostgreSQL), so a `paid` and a `failed` of one redemption
        // apply one after the other and `after_paid` is read as it stands.
        Ok(uuid) => redemption_requests::Entity::find_by_id(uuid).lock_exclusive().one(db).await?,
        Err(_) => None,
    }
    .ok_or_else(|| PayoutError::Unknown(id.to_owned()))?;
    let burn = transactions::Entity::find_by_id(redemption.burn_id).one(db).await?;
    let event = if paid { PayoutEvent::Paid } else { PayoutEvent::Failed };
    match decide(event, &redemption.status, burn.as_ref().map(|b| b.status.as_str())) {
        PayoutAction::StaysFailed => Ok(PayoutOutcome::StaysFailed),
        PayoutAction::AlreadyFailed => Ok(PayoutOutcome::Failed { recredit: None }),
        PayoutAction::WaitForBurn => Ok(PayoutOutcome::BurnInFlight),
        PayoutAction::BurnMissing => Err(DbErr::RecordNotFound(format!("burn {} of redemption {}", redemption.burn_id, redemption.id)).into()),
        PayoutAction::MarkPaid { alert, record } => {
            if let (Some(alert), Some(burn)) = (alert, &burn) {
                raise_paid_alert(db, &redemption, burn, alert, event_ref).await;
            }
            if record {
                set_status(db, redemption.id, &[OPEN], PAID, event_ref, None).await?;
            }
            Ok(PayoutOutcome::Paid)
        }
        PayoutAction::MarkFailed { undo, record } => mark_failed(db, keys, &redemption, undo, record, event_ref, provenance).await,
    }
}

/// Tells an operator that `redemption` was paid out although its `burn`
/// did not confirm (`alert` says how bad that is).
async fn raise_paid_alert(db: &impl ConnectionTrait, redemption: &redemption_requests::Model, burn: &transactions::Model, alert: PaidAlert, event_ref: &str) {
    let (severity, category, problem) = match alert {
        PaidAlert::BeforeBurn => (crate::alert::Severity::Warning, "payout_before_burn", "is not confirmed yet; should it fail, the user keeps the tokens"),
        PaidAlert::WithoutBurn => (crate::alert::Severity::Error, "payout_without_burn", "did not happen: the user kept the tokens. Reconcile by hand"),
    };
    crate::alert::raise(
        db,
        severity,
        category,
        &format!("Redemption {} was paid out ({event_ref}) but its burn {} ({}) {problem}.", redemption.id, burn.id, burn.status),
        serde_json::json!({ "redemption_id": redemption.id, "burn_id": burn.id, "burn_status": burn.status, "event": event_ref }),
    )
    .await;
}

/// A `payout.failed`: gives the tokens back as `undo` says, then records
/// the failure (when `record`) with the re-credit, if one was queued.
async fn mark_failed(
    db: &impl ConnectionTrait,
    keys: Option<&MasterKeys>,
    redemption: &redemption_requests::Model,
    undo: Undo,
    record: bool,
    event_ref: &str,
    provenance: Provenance,
) -> Result<PayoutOutcome, PayoutError> {
    let recredit = match undo {
        Undo::Nothing => None,
        Undo::WithdrawBurn => {
            if !withdraw_burn(db, redemption.burn_id).await? {
                // Signed since it was read: decide once it settles.
                return Ok(PayoutOutcome::BurnInFlight);
            }
            None
        }
        Undo::Recredit { after_paid } => Some(Box::new(queue_recredit(db, keys, redemption, after_paid, provenance).await?)),
    };
    if record {
        set_status(db, redemption.id, &[OPEN, PAID], FAILED_PAYOUT, event_ref, recredit.as_ref().map(|r| r.intent.id)).await?;
    }
    Ok(PayoutOutcome::Failed { recredit })
}

/// Cancels burn `id` if it is still unsigned; whether it was.
async fn withdraw_burn(db: &impl ConnectionTrait, id: Uuid) -> Result<bool, DbErr> {
    let withdrawn = transactions::Entity::update_many()
        .col_expr(transactions::Column::Status, Expr::value(CANCELLED))
        .col_expr(transactions::Column::LastError, Expr::value("its redemption's payout failed"))
        .col_expr(transactions::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(transactions::Column::Id.eq(id))
        .filter(transactions::Column::Status.is_in([QUEUED, HELD]))
        .exec(db)
        .await?;
    Ok(withdrawn.rows_affected == 1)
}

/// Queues (or finds) the mint that gives `redemption`'s amount back.
async fn queue_recredit(
    db: &impl ConnectionTrait,
    keys: Option<&MasterKeys>,
    redemption: &redemption_requests::Model,
    after_paid: bool,
    provenance: Provenance,
) -> Result<Recredit, PayoutError> {
    let user = users::Entity::find_by_id(redemption.user_id)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("user {}", redemption.user_id)))?;
    let amount = alloy::primitives::U256::from_str_radix(&redemption.amount, 10).unwrap_or_default();
    let intent = NewIntent {
        user: user.external_ref.clone(),
        kind: CallKind::Mint,
        amount,
        reason: format!("re-credit: payout of redemption {} failed", redemption.id),
        source: format!("recredit:{}", redemption.id),
        reverses: None,
    };
    let enqueued = enqueue_with(db, keys, intent, provenance).await?;
    Ok(Recredit { intent: enqueued.intent, user: user.external_ref, created: enqueued.created, after_paid })
}

async fn set_status(db: &impl ConnectionTrait, id: Uuid, from: &[&str], to: &str, event_ref: &str, recredit: Option<Uuid>) -> Result<(), DbErr> {
    let mut update = redemption_requests::Entity::update_many()
        .col_expr(redemption_requests::Column::Status, Expr::value(to))
        .col_expr(redemption_requests::Column::PayoutEvent, Expr::value(Some(event_ref.to_owned())))
        .col_expr(redemption_requests::Column::UpdatedAt, Expr::value(Utc::now()));
    if recredit.is_some() {
        update = update.col_expr(redemption_requests::Column::RecreditId, Expr::value(recredit));
    }
    update
        .filter(redemption_requests::Column::Id.eq(id))
        .filter(redemption_requests::Column::Status.is_in(from.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::FAILED;

    /// Every burn status the ledger writes.
    const BURNS: [&str; 7] = [QUEUED, HELD, SIGNED, BROADCAST, CONFIRMED, FAILED, CANCELLED];

    fn both(redemption: &str, burn: Option<&str>) -> [PayoutAction; 2] {
        [decide(PayoutEvent::Paid, redemption, burn), decide(PayoutEvent::Failed, redemption, burn)]
    }

    #[test]
    fn a_failed_redemption_stays_failed_whatever_comes() {
        for burn in BURNS.map(Some).into_iter().chain([None, Some("mystery")]) {
            assert_eq!(both(FAILED_PAYOUT, burn), [PayoutAction::StaysFailed, PayoutAction::AlreadyFailed], "burn {burn:?}");
        }
    }

    #[test]
    fn a_redemption_without_its_burn_is_a_broken_ledger() {
        for redemption in [OPEN, PAID, "mystery"] {
            assert_eq!(both(redemption, None), [PayoutAction::BurnMissing; 2], "redemption {redemption}");
        }
    }

    #[test]
    fn paid_with_its_burn_confirmed_is_recorded_without_an_alert() {
        assert_eq!(decide(PayoutEvent::Paid, OPEN, Some(CONFIRMED)), PayoutAction::MarkPaid { alert: None, record: true });
        assert_eq!(decide(PayoutEvent::Paid, PAID, Some(CONFIRMED)), PayoutAction::MarkPaid { alert: None, record: false });
    }

    #[test]
    fn paid_before_its_burn_confirmed_is_recorded_with_a_warning() {
        for burn in [QUEUED, HELD, SIGNED, BROADCAST] {
            assert_eq!(decide(PayoutEvent::Paid, OPEN, Some(burn)), PayoutAction::MarkPaid { alert: Some(PaidAlert::BeforeBurn), record: true }, "burn {burn}");
            assert_eq!(
                decide(PayoutEvent::Paid, PAID, Some(burn)),
                PayoutAction::MarkPaid { alert: Some(PaidAlert::BeforeBurn), record: false },
                "burn {burn}"
            );
        }
    }

    #[test]
    fn paid_without_a_burn_is_recorded_with_an_error() {
        for burn in [FAILED, CANCELLED, "mystery"] {
            assert_eq!(
                decide(PayoutEvent::Paid, OPEN, Some(burn)),
                PayoutAction::MarkPaid { alert: Some(PaidAlert::WithoutBurn), record: true },
                "burn {burn}"
            );
            assert_eq!(
                decide(PayoutEvent::Paid, PAID, Some(burn)),
                PayoutAction::MarkPaid { alert: Some(PaidAlert::WithoutBurn), record: false },
                "burn {burn}"
            );
        }
    }

    #[test]
    fn failed_before_the_burn_is_signed_withdraws_it() {
        for (redemption, burn) in [(OPEN, QUEUED), (OPEN, HELD), (PAID, QUEUED), (PAID, HELD)] {
            assert_eq!(
                decide(PayoutEvent::Failed, redemption, Some(burn)),
                PayoutAction::MarkFailed { undo: Undo::WithdrawBurn, record: true },
                "{redemption}/{burn}"
            );
        }
    }

    #[test]
    fn failed_while_the_burn_is_on_its_way_waits() {
        for (redemption, burn) in [(OPEN, SIGNED), (OPEN, BROADCAST), (PAID, SIGNED), (PAID, BROADCAST)] {
            assert_eq!(decide(PayoutEvent::Failed, redemption, Some(burn)), PayoutAction::WaitForBurn, "{redemption}/{burn}");
        }
    }

    #[test]
    fn failed_after_the_burn_confirmed_recredits_held_if_it_was_paid() {
        assert_eq!(decide(PayoutEvent::Failed, OPEN, Some(CONFIRMED)), PayoutAction::MarkFailed { undo: Undo::Recredit { after_paid: false }, record: true });
        assert_eq!(decide(PayoutEvent::Failed, PAID, Some(CONFIRMED)), PayoutAction::MarkFailed { undo: Undo::Recredit { after_paid: true }, record: true });
    }

    #[test]
    fn failed_when_nothing_was_burned_owes_nothing() {
        for (redemption, burn) in [(OPEN, FAILED), (OPEN, CANCELLED), (OPEN, "mystery"), (PAID, FAILED), (PAID, CANCELLED)] {
            assert_eq!(
                decide(PayoutEvent::Failed, redemption, Some(burn)),
                PayoutAction::MarkFailed { undo: Undo::Nothing, record: true },
                "{redemption}/{burn}"
            );
        }
    }

    #[test]
    fn an_unknown_redemption_status_is_never_written_over() {
        assert_eq!(decide(PayoutEvent::Paid, "mystery", Some(QUEUED)), PayoutAction::MarkPaid { alert: Some(PaidAlert::BeforeBurn), record: false });
        assert_eq!(decide(PayoutEvent::Failed, "mystery", Some(HELD)), PayoutAction::MarkFailed { undo: Undo::WithdrawBurn, record: false });
        assert_eq!(
            decide(PayoutEvent::Failed, "mystery", Some(CONFIRMED)),
            PayoutAction::MarkFailed { undo: Undo::Recredit { after_paid: false }, record: false }
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// A redemption status: a known one, or anything.
        fn redemption_status() -> impl Strategy<Value = String> {
            prop_oneof![Just(OPEN.to_owned()), Just(PAID.to_owned()), Just(FAILED_PAYOUT.to_owned()), "[a-z]{0,10}"]
        }

        /// A burn status: one the ledger writes, or anything.
        fn burn_status() -> impl Strategy<Value = String> {
            prop_oneof![proptest::sample::select(BURNS.to_vec()).prop_map(str::to_owned), "[a-z]{0,10}"]
        }

        fn event() -> impl Strategy<Value = PayoutEvent> {
            prop_oneof![Just(PayoutEvent::Paid), Just(PayoutEvent::Failed)]
        }

        fn redemption(status: &str) -> redemption_requests::Model {
            let now = Utc::now();
            redemption_requests::Model {
                id: Uuid::nil(),
                user_id: Uuid::nil(),
                burn_id: Uuid::nil(),
                amount: "1".into(),
                payout: "{}".into(),
                status: status.into(),
                recredit_id: None,
                payout_event: None,
                created_at: now,
                updated_at: now,
            }
        }

        /// What happens next: the chain moves the burn, or a payout event arrives.
        #[derive(Debug, Clone)]
        enum Step {
            Burn(&'static str),
            Payout(PayoutEvent),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![proptest::sample::select(BURNS.to_vec()).prop_map(Step::Burn), event().prop_map(Step::Payout)]
        }

        proptest! {
            // No regression files: the repository's top level holds only what SPEC section 1 lists.
            #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

            /// A failed redemption ignores every later event, whatever its burn.
            #[test]
            fn a_failure_is_final(event in event(), burn in proptest::option::of(burn_status())) {
                let action = decide(event, FAILED_PAYOUT, burn.as_deref());
                prop_assert!(matches!(action, PayoutAction::StaysFailed | PayoutAction::AlreadyFailed), "{action:?}");
            }

            /// Payable exactly when open with the burn confirmed: never
            /// before the burn confirmed, never again once paid or failed.
            #[test]
            fn payable_only_while_open_with_the_burn_confirmed(status in redemption_status(), burn in burn_status()) {
                prop_assert_eq!(payable(&redemption(&status), &burn), status == OPEN && burn == CONFIRMED);
            }

            /// A `paid` is always recorded (when open), and raises an alert
            /// exactly when the burn has not confirmed.
            #[test]
            fn a_payout_before_its_burn_confirmed_is_always_alerted(status in redemption_status(), burn in burn_status()) {
                prop_assume!(status != FAILED_PAYOUT);
                let PayoutAction::MarkPaid { alert, record } = decide(PayoutEvent::Paid, &status, Some(&burn)) else {
                    return Err(TestCaseError::fail("a paid that is not recorded as paid"));
                };
                prop_assert_eq!(alert.is_none(), burn == CONFIRMED);
                prop_assert_eq!(record, status == OPEN);
            }

            /// A burn status the ledger does not write counts as nothing
            /// burned; a redemption status it does not write is never written over.
            #[test]
            fn unknown_statuses_are_never_taken_for_known_ones(event in event(), status in "[a-z]{0,10}", burn in "[a-z]{0,10}") {
                prop_assume!(!BURNS.contains(&burn.as_str()));
                prop_assert_eq!(decide(event, OPEN, Some(&burn)), decide(event, OPEN, Some(FAILED)));
                prop_assume!(![OPEN, PAID, FAILED_PAYOUT].contains(&status.as_str()));
                let record = match decide(event, &status, Some(&burn)) {
                    PayoutAction::MarkPaid { record, .. } | PayoutAction::MarkFailed { record, .. } => record,
                    _ => false,
                };
                prop_assert!(!record, "wrote over status {status:?}");
            }

            /// Whatever the order of payout events and burn moves, a
            /// redemption is re-credited at most once and only for a
            /// confirmed burn, a burn is withdrawn only while unsigned, and
            /// a redemption goes open → paid → failed, never back.
            #[test]
            fn a_recredit_happens_at_most_once_and_only_for_a_confirmed_burn(steps in proptest::collection::vec(step(), 0..24)) {
                let (mut status, mut burn, mut recredits) = (OPEN, QUEUED, 0);
                for step in steps {
                    let event = match step {
                        Step::Burn(next) => {
                            burn = next;
                            continue;
                        }
                        Step::Payout(event) => event,
                    };
                    let before = status;
                    match decide(event, status, Some(burn)) {
                        PayoutAction::MarkPaid { record, .. } => {
                            if record {
                                status = PAID;
                            }
                        }
                        PayoutAction::MarkFailed { undo, record } => {
                            match undo {
                                Undo::Nothing => prop_assert!(burn == FAILED || burn == CANCELLED, "nothing owed for burn {burn}"),
                                Undo::WithdrawBurn => {
                                    prop_assert!(burn == QUEUED || burn == HELD, "withdrew burn {burn}");
                                    burn = CANCELLED;
                                }
                                Undo::Recredit { after_paid } => {
                                    prop_assert_eq!(burn, CONFIRMED);
                                    prop_assert_eq!(after_paid, before == PAID);
                                    recredits += 1;
                                }
                            }
                            prop_assert!(record);
                            status = FAILED_PAYOUT;
                        }
                        PayoutAction::WaitForBurn => prop_assert!(burn == SIGNED || burn == BROADCAST),
                        PayoutAction::StaysFailed | PayoutAction::AlreadyFailed => prop_assert_eq!(before, FAILED_PAYOUT),
                        PayoutAction::BurnMissing => prop_assert!(false, "the burn is there"),
                    }
                    prop_assert!(recredits <= 1, "re-credited twice");
                    let order = |s: &str| [OPEN, PAID, FAILED_PAYOUT].iter().position(|k| *k == s);
                    prop_assert!(order(status) >= order(before), "{before} went back to {status}");
                }
            }
        }
    }
}
