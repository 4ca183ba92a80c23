//! The rewards engine end to end: signed webhooks through the real listener,
//! the processor, the wallet actor and anvil, on PostgreSQL and SQLite.

use std::time::Duration;

use alloy::primitives::{Address, U256};
use entity::{transactions, users, webhook_events};
use havend::webhooks::Partner;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};

use crate::on_both_backends;
use crate::support::chain::{Prepared, TEST_MASTER_KEY, TestChain, alerts, chain_config, drained, wallets_looked};
use crate::support::{Backend, TestDaemon, eventually};

/// `whole` HNV in base units.
fn hnv(whole: u64) -> U256 {
    U256::from(whole) * U256::from(10u64).pow(U256::from(18))
}

/// `text` HNV (a decimal) in base units.
fn hnv_str(text: &str) -> U256 {
    havend::chain::parse_units(text).unwrap()
}

struct Setup {
    chain: TestChain,
    daemon: TestDaemon,
}

impl Setup {
    async fn start(backend: Backend) -> Setup {
        Self::start_with(backend, |_| {}).await
    }

    async fn start_with(backend: Backend, tweak: impl FnOnce(&mut havend::config::Config) + Send + 'static) -> Setup {
        Self::start_on_chain(TestChain::start(Some(1)).await, backend, tweak).await
    }

    /// A daemon signing for one hot wallet on `chain`.
    async fn start_on_chain(chain: TestChain, backend: Backend, tweak: impl FnOnce(&mut havend::config::Config) + Send + 'static) -> Setup {
        let Prepared { database, key_dir, wallets, .. } = Prepared::new(backend, &chain, 1).await;
        let key_file = key_dir.path().join("master.key");
        let addresses: Vec<Address> = wallets.iter().map(|w| w.address.parse().unwrap()).collect();
        let chain_config = chain_config(&chain, &addresses);
        let mut daemon = TestDaemon::start_on(database, |db| db.url.clone(), move |config| {
            config.chain = Some(chain_config);
            config.custody.master_key_file = Some(key_file);
            tweak(config);
        })
        .await;
        daemon.keep.push(key_dir);
        Setup { chain, daemon }
    }

    async fn deliver(&self, partner: Partner, event: Option<&str>, body: &str) {
        let answer = self.daemon.deliver(partner, event, body).await;
        assert!(answer.status == 200 || answer.status == 202, "{partner}/{event:?}: {} {}", answer.status, answer.json);
    }

    async fn address_of(&self, user: &str) -> Option<Address> {
        let row = users::Entity::find().filter(users::Column::ExternalRef.eq(user)).one(&self.daemon.db).await.unwrap()?;
        Some(row.address.parse().unwrap())
    }

    /// Waits until `user` holds exactly `expected` on chain.
    async fn holds(&self, user: &str, expected: U256) -> bool {
        eventually(Duration::from_secs(40), || async {
            match self.address_of(user).await {
                Some(address) => self.chain.balance_of(address).await == expected,
                None => expected.is_zero(),
            }
        })
        .await
    }

    async fn event_status(&self, partner: Partner, key: &str) -> Option<String> {
        self.daemon.event(partner, key).await.map(|e| e.status)
    }

    async fn processed(&self, partner: Partner, key: &str) -> bool {
        eventually(Duration::from_secs(20), || async { self.event_status(partner, key).await.as_deref() == Some("processed") }).await
    }

    async fn reconcile_is_clean(&self) {
        let client = self.chain.client();
        let report = havend::ledger::reconcile::reconcile(&self.daemon.db, &client, self.chain.token).await.unwrap();
        assert!(report.is_clean(), "reconcile: {}", serde_json::to_string_pretty(&report).unwrap());
    }

    async fn stop(self) {
        self.daemon.stop().await;
    }
}

async fn signed_booking_mints_exactly_its_reward_and_cancellation_burns_it(backend: Backend) {
    let setup = Setup::start(backend).await;
    setup.deliver(Partner::Aurora, Some("booking-created"), r#"{"id":"bk_480","guest_id":"g480","total_price":"200","nights":2}"#).await;
    assert!(setup.holds("aurora:g480", hnv(480)).await, "200 CAD x 2 x 1.2 = 480 HNV on chain");
    let intent = transactions::Entity::find().filter(transactions::Column::Source.eq("aurora:booking-created:bk_480")).one(&setup.daemon.db).await.unwrap().unwrap();
    assert_eq!(intent.rules_hash.as_deref(), Some(havend::config::RewardRules::default().hash().as_str()), "the rules snapshot is recorded");

    setup.deliver(Partner::Aurora, Some("booking-cancelled"), r#"{"id":"bk_480"}"#).await;
    assert!(setup.holds("aurora:g480", U256::ZERO).await, "the cancellation burned the reward");
    assert!(drained(&setup.daemon, Duration::from_secs(30)).await);
    setup.reconcile_is_clean().await;
    setup.stop().await;
}

async fn a_cancellation_before_its_booking_leaves_a_tombstone(backend: Backend) {
    let setup = Setup::start(backend).await;
    setup.deliver(Partner::Aurora, Some("booking-cancelled"), r#"{"id":"bk_late"}"#).await;
    assert!(setup.processed(Partner::Aurora, "booking-cancelled:bk_late").await);
    setup.deliver(Partner::Aurora, Some("booking-created"), r#"{"id":"bk_late","guest_id":"g_late","total_price":"100","nights":1}"#).await;
    assert!(setup.processed(Partner::Aurora, "booking-created:bk_late").await);
    let intents = transactions::Entity::find().count(&setup.daemon.db).await.unwrap();
    assert_eq!(intents, 0, "the late booking mints nothing");
    let booking = entity::aurora_bookings::Entity::find_by_id("bk_late".to_owned()).one(&setup.daemon.db).await.unwrap().unwrap();
    assert_eq!((booking.status.as_str(), booking.total_price.as_deref()), ("cancelled", Some("100")));
    setup.stop().await;
}

async fn two_reviews_of_one_booking_earn_one_bonus(backend: Backend) {
    let setup = Setup::start(backend).await;
    setup.deliver(Partner::Aurora, Some("booking-created"), r#"{"id":"bk_rev","guest_id":"g_rev","total_price":"10","nights":1}"#).await;
    assert!(setup.holds("aurora:g_rev", hnv(20)).await);
    let review = |id: &str| format!(r#"{{"id":"{id}","booking_id":"bk_rev","guest_id":"g_rev","rating":5}}"#);
    let (one, two) = (review("rv_1"), review("rv_2"));
    let (a, b) = tokio::join!(
        setup.daemon.deliver(Partner::Aurora, Some("review-submitted"), &one),
        setup.daemon.deliver(Partner::Aurora, Some("review-submitted"), &two),
    );
    assert_eq!((a.status, b.status), (200, 200));
    assert!(setup.processed(Partner::Aurora, "review-submitted:rv_1").await);
    assert!(setup.processed(Partner::Aurora, "review-submitted:rv_2").await);
    assert!(drained(&setup.daemon, Duration::from_secs(30)).await);
    assert!(setup.holds("aurora:g_rev", hnv(70)).await, "+50 once");
    setup.reconcile_is_clean().await;
    setup.stop().await;
}

async fn a_review_before_its_booking_waits_for_it(backend: Backend) {
    let setup = Setup::start_with(backend, |config| config.processor.poll_interval_ms = 100).await;
    setup.deliver(Partner::Aurora, Some("review-submitted"), r#"{"id":"rv_early","booking_id":"bk_early","guest_id":"g_early","rating":4}"#).await;
    // The processor looked at it: the wait's reason is recorded.
    let looked = eventually(Duration::from_secs(20), || async {
        setup.daemon.event(Partner::Aurora, "review-submitted:rv_early").await.is_some_and(|e| e.last_error.is_some())
    })
    .await;
    assert!(looked, "the processor looked at the early review");
    let waiting = setup.daemon.event(Partner::Aurora, "review-submitted:rv_early").await.unwrap();
    assert_eq!((waiting.status.as_str(), waiting.attempts), ("pending", 0), "waiting does not count as a failure");
    setup.deliver(Partner::Aurora, Some("booking-created"), r#"{"id":"bk_early","guest_id":"g_early","total_price":"5","nights":1}"#).await;
    // The wait backs off (about a minute at first); replaying the wait is what the poll does.
    force_due(&setup.daemon, "review-submitted:rv_early").await;
    assert!(setup.holds("aurora:g_early", hnv(60)).await, "10 for the booking, 50 for the review");
    setup.stop().await;
}

async fn tribe_stripe_and_hi_events_rewards_follow_the_rules(backend: Backend) {
    let setup = Setup::start(backend).await;
    let tribe = [
        ("event-attendance", r#"{"id":"tev_1","attendee_id":"m1","type":"wisdom_circle","attended":true}"#),
        ("event-attendance", r#"{"id":"tev_2","attendee_id":"m1","type":"yoga","attended":true}"#),
        ("event-attendance", r#"{"id":"tev_3","attendee_id":"m1","type":"workshop","attended":false}"#),
        ("contribution", r#"{"id":"c1","user_id":"m1","quality_score":5.0}"#),
        ("coaching-milestone", r#"{"id":"cm1","user_id":"m1","milestone":"midpoint"}"#),
        ("coaching-milestone", r#"{"id":"cm2","user_id":"m1","milestone":"graduation"}"#),
        ("referral-success", r#"{"id":"ref1","referrer_id":"m1","tier":"silver"}"#),
        ("staking-started", r#"{"id":"st1","user_id":"m1","amount":"1000"}"#),
    ];
    for (event, body) in tribe {
        setup.deliver(Partner::Tribe, Some(event), body).await;
    }
    // 100 + 25 + 0 + 50 x 2.0 + 150 + (graduation: invalid) + 250 = 625.
    assert!(setup.holds("tribe:m1", hnv(625)).await);
    assert_eq!(setup.event_status(Partner::Tribe, "coaching-milestone:cm2").await.as_deref(), Some("invalid"));

    let payment = |id: &str, amount: u64, currency: &str| {
        format!(r#"{{"id":"{id}","type":"payment_intent.succeeded","data":{{"object":{{"amount_received":{amount},"currency":"{currency}","metadata":{{"haven_user_id":"aurora:payer"}}}}}}}}"#)
    };
    setup.deliver(Partner::Stripe, None, &payment("evt_cad", 1999, "cad")).await;
    setup.deliver(Partner::Stripe, None, &payment("evt_jpy", 500, "jpy")).await;
    setup.deliver(Partner::Stripe, None, &payment("evt_chf", 500, "chf")).await;
    assert!(setup.holds("aurora:payer", hnv_str("519.99")).await, "19.99 CAD + 500 JPY");
    assert!(eventually(Duration::from_secs(10), || async { setup.event_status(Partner::Stripe, "evt_chf").await.as_deref() == Some("invalid") }).await);

    let status = |status: &str, at: &str| format!(r#"{{"event_id":"he_1","status":"{status}","updated_at":"{at}"}}"#);
    setup.deliver(Partner::HiEvents, Some("event-status-changed"), &status("LIVE", "2026-11-01T12:00:00Z")).await;
    assert!(setup.processed(Partner::HiEvents, "event-status-changed:he_1:LIVE:2026-11-01T12%3A00%3A00Z").await);
    // Earlier as an instant (11:30 UTC), though its local clock reads later.
    setup.deliver(Partner::HiEvents, Some("event-status-changed"), &status("DRAFT", "2026-11-01T13:30:00+02:00")).await;
    assert!(setup.processed(Partner::HiEvents, "event-status-changed:he_1:DRAFT:2026-11-01T13%3A30%3A00%2B02%3A00").await);
    let row = entity::ticketing_status::Entity::find_by_id("he_1".to_owned()).one(&setup.daemon.db).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.partner_status.as_str()), ("active", "LIVE"), "the older DRAFT changed nothing");
    assert!(drained(&setup.daemon, Duration::from_secs(30)).await);
    setup.reconcile_is_clean().await;
    setup.stop().await;
}

async fn a_mint_over_a_limit_is_held_and_released_once(backend: Backend) {
    let setup = Setup::start_with(backend, |config| config.rewards.limits.max_per_event = "100".parse().unwrap()).await;
    setup.deliver(Partner::Aurora, Some("booking-created"), r#"{"id":"bk_big","guest_id":"g_big","total_price":"1000","nights":1}"#).await;
    assert!(setup.processed(Partner::Aurora, "booking-created:bk_big").await);
    let held = transactions::Entity::find().filter(transactions::Column::Status.eq("held")).one(&setup.daemon.db).await.unwrap().expect("held");
    assert_eq!(alerts(&setup.daemon, "mint_held").await.len(), 1);
    assert!(wallets_looked(&setup.daemon).await);
    assert_eq!(setup.chain.total_supply().await, U256::ZERO, "nothing minted while held");

    havend::rewards::operator::release(setup.daemon.daemon().db(), held.id, "test").await.unwrap();
    assert!(havend::rewards::operator::release(setup.daemon.daemon().db(), held.id, "test").await.is_err(), "a second release changes nothing");
    setup.daemon.daemon().nudge_wallets();
    assert!(setup.holds("aurora:g_big", hnv(2000)).await);
    setup.stop().await;
}

async fn a_deterministic_failure_is_dead_lettered_and_replayed_once(backend: Backend) {
    let setup = Setup::start_with(backend, |config| {
        config.processor.retry_base_ms = 10;
        config.processor.retry_max_secs = 1;
        config.processor.poll_interval_ms = 50;
    })
    .await;
    // A payment for havend's own user id that does not exist (yet).
    let user_id = uuid::Uuid::now_v7();
    let body = format!(r#"{{"id":"evt_ghost","type":"payment_intent.succeeded","data":{{"object":{{"amount_received":700,"currency":"usd","metadata":{{"haven_user_id":"{user_id}"}}}}}}}}"#);
    setup.deliver(Partner::Stripe, None, &body).await;
    assert!(eventually(Duration::from_secs(20), || async { setup.event_status(Partner::Stripe, "evt_ghost").await.as_deref() == Some("dead_letter") }).await);
    let dead = setup.daemon.event(Partner::Stripe, "evt_ghost").await.unwrap();
    assert_eq!(dead.attempts, 5, "the fifth deterministic failure dead-letters");
    assert_eq!(alerts(&setup.daemon, "webhook_dead_letter").await.len(), 1);

    // The user appears (under that id), then the operator replays.
    let keys = havend::custody::MasterKeys::parse(TEST_MASTER_KEY).unwrap();
    let hot = havend::ledger::active_hot_wallets(&setup.daemon.db).await.unwrap()[0];
    let custodial = havend::custody::create_wallet(&setup.daemon.db, &keys, havend::custody::USER, "test").await.unwrap();
    let user = users::ActiveModel {
        id: Set(user_id),
        external_ref: Set("stripe:ghost".into()),
        wallet_id: Set(custodial.id),
        address: Set(custodial.address),
        hot_wallet_id: Set(hot),
        created_at: Set(chrono::Utc::now()),
    };
    users::Entity::insert(user).exec(&setup.daemon.db).await.unwrap();
    assert_eq!(havend::rewards::inbox::replay(&setup.daemon.db, "stripe:evt_ghost").await.unwrap(), havend::rewards::inbox::Replay::Requeued(dead.id));
    setup.daemon.daemon().nudge_processors();
    assert!(setup.holds("stripe:ghost", hnv(7)).await);
    assert_eq!(transactions::Entity::find().count(&setup.daemon.db).await.unwrap(), 1);
    setup.stop().await;
}

async fn without_an_active_wallet_events_wait_and_are_not_dead_lettered(backend: Backend) {
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("master.key");
    std::fs::write(&key_file, TEST_MASTER_KEY).unwrap();
    let mut daemon = TestDaemon::start_with(backend, |config| {
        config.processor.transient_retry_ms = 50;
        config.processor.max_attempts = 1;
        config.custody.master_key_file = Some(key_file);
    })
    .await;
    daemon.keep.push(key_dir);
    let answer = daemon.deliver(Partner::Aurora, Some("booking-created"), r#"{"id":"bk_wait","guest_id":"g","total_price":"1","nights":1}"#).await;
    assert_eq!(answer.status, 200);
    let looked = eventually(Duration::from_secs(20), || async {
        daemon.event(Partner::Aurora, "booking-created:bk_wait").await.is_some_and(|e| e.last_error.is_some())
    })
    .await;
    assert!(looked, "the processor tried the event");
    let event = daemon.event(Partner::Aurora, "booking-created:bk_wait").await.unwrap();
    assert_eq!((event.status.as_str(), event.attempts), ("pending", 0));
    assert_eq!(event.last_error.as_deref(), Some("no active hot wallet to assign"), "the transient cause is recorded");
    daemon.stop().await;
}

async fn staking_pays_each_completed_week_once(backend: Backend) {
    let setup = Setup::start(backend).await;
    setup.deliver(Partner::Tribe, Some("staking-started"), r#"{"id":"st_w","user_id":"staker","amount":"36500","started_at":"2025-12-22T09:00:00Z"}"#).await;
    assert!(setup.processed(Partner::Tribe, "staking-started:st_w").await);
    let db = setup.daemon.daemon().db();
    let keys = havend::custody::MasterKeys::parse(TEST_MASTER_KEY).unwrap();
    let rules = havend::config::RewardRules::default();
    let as_of = |d: &str| chrono::DateTime::parse_from_rfc3339(d).unwrap().with_timezone(&chrono::Utc);
    // One week over (12-22..12-28); then the week across new year; twice, concurrently.
    let first = havend::rewards::staking::run(db, Some(&keys), &rules, as_of("2025-12-29T00:00:00Z")).await.unwrap();
    assert_eq!(first.paid, 1);
    let (a, b) = tokio::join!(
        havend::rewards::staking::run(db, Some(&keys), &rules, as_of("2026-01-05T03:00:00Z")),
        havend::rewards::staking::run(db, Some(&keys), &rules, as_of("2026-01-05T03:00:00Z")),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.paid + b.paid, 1, "the week of 2025-12-29 is paid once");
    let sources: Vec<String> = transactions::Entity::find().filter(transactions::Column::Source.starts_with("staking:")).all(&setup.daemon.db).await.unwrap().into_iter().map(|t| t.source).collect();
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert!(sources.contains(&"staking:st_w:2025-12-29".to_owned()));
    // 36500 x 0.10 x 7 / 365 = 70 HNV a week.
    assert!(setup.holds("tribe:staker", hnv(140)).await);
    setup.stop().await;
}

async fn a_backdated_stake_is_caught_up_a_year_per_run(backend: Backend) {
    let setup = Setup::start(backend).await;
    // The earliest start intake accepts: about 360 unpaid weeks.
    setup.deliver(Partner::Tribe, Some("staking-started"), r#"{"id":"st_old","user_id":"old_staker","amount":"365","started_at":"2020-01-01T00:00:00Z"}"#).await;
    assert!(setup.processed(Partner::Tribe, "staking-started:st_old").await);
    let db = setup.daemon.daemon().db();
    let keys = havend::custody::MasterKeys::parse(TEST_MASTER_KEY).unwrap();
    let rules = havend::config::RewardRules::default();
    let as_of = chrono::DateTime::parse_from_rfc3339("2026-11-30T03:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let paid = || async { transactions::Entity::find().filter(transactions::Column::Source.starts_with("staking:st_old:")).count(&setup.daemon.db).await.unwrap() };
    let first = havend::rewards::staking::run(db, Some(&keys), &rules, as_of).await.unwrap();
    assert_eq!((first.paid, first.deferred), (havend::rewards::staking::MAX_WEEKS_PER_RUN, 1));
    assert_eq!(paid().await, 52);
    assert!(transactions::Entity::find().filter(transactions::Column::Source.eq("staking:st_old:2020-01-06")).one(&setup.daemon.db).await.unwrap().is_some(), "the oldest week first");
    let second = havend::rewards::staking::run(db, Some(&keys), &rules, as_of).await.unwrap();
    assert_eq!((second.paid, second.already_paid), (52, 52), "the next run continues where the first stopped");
    assert_eq!(paid().await, 104);
    setup.stop().await;
}

async fn intent_of(daemon: &TestDaemon, source: &str) -> transactions::Model {
    transactions::Entity::find().filter(transactions::Column::Source.eq(source)).one(&daemon.db).await.unwrap().unwrap_or_else(|| panic!("no intent {source}"))
}

async fn a_cancellation_follows_its_mint_in_every_state(backend: Backend) {
    let setup = Setup::start_with(backend, |config| config.rewards.limits.max_per_event = "500".parse().unwrap()).await;
    let db = setup.daemon.daemon().db();
    let booking = |id: &str, guest: &str, price: &str| format!(r#"{{"id":"{id}","guest_id":"{guest}","total_price":"{price}","nights":1}}"#);
    let cancel = |id: &str| format!(r#"{{"id":"{id}"}}"#);

    // Queued: minting is paused, so the mint waits; both are cancelled, nothing reaches the chain.
    havend::ledger::pause::set_paused(db, true, "test").await.unwrap();
    setup.deliver(Partner::Aurora, Some("booking-created"), &booking("bk_q", "g_q", "10")).await;
    assert!(setup.processed(Partner::Aurora, "booking-created:bk_q").await);
    setup.deliver(Partner::Aurora, Some("booking-cancelled"), &cancel("bk_q")).await;
    assert!(setup.processed(Partner::Aurora, "booking-cancelled:bk_q").await);
    assert_eq!(intent_of(&setup.daemon, "aurora:booking-created:bk_q").await.status, "cancelled");

    // Held over the per-event limit: cancelled with it.
    setup.deliver(Partner::Aurora, Some("booking-created"), &booking("bk_h", "g_h", "1000")).await;
    assert!(setup.processed(Partner::Aurora, "booking-created:bk_h").await);
    assert_eq!(intent_of(&setup.daemon, "aurora:booking-created:bk_h").await.status, "held");
    setup.deliver(Partner::Aurora, Some("booking-cancelled"), &cancel("bk_h")).await;
    assert!(setup.processed(Partner::Aurora, "booking-cancelled:bk_h").await);
    assert_eq!(intent_of(&setup.daemon, "aurora:booking-created:bk_h").await.status, "cancelled");
    havend::ledger::pause::set_paused(db, false, "test").await.unwrap();

    // In flight: the cancellation arrives while the mint is signed but not final; the burn waits for it.
    setup.deliver(Partner::Aurora, Some("booking-created"), &booking("bk_f", "g_f", "10")).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            let row = transactions::Entity::find().filter(transactions::Column::Source.eq("aurora:booking-created:bk_f")).one(&setup.daemon.db).await.unwrap();
            row.is_some_and(|t| t.status == "signed" || t.status == "broadcast")
        })
        .await
    );
    setup.deliver(Partner::Aurora, Some("booking-cancelled"), &cancel("bk_f")).await;

    // Confirmed, then partly spent: the reversal burns what is left and records the shortfall.
    setup.deliver(Partner::Aurora, Some("booking-created"), &booking("bk_s", "g_s", "50")).await;
    assert!(setup.holds("aurora:g_s", hnv(100)).await);
    let keys = havend::custody::MasterKeys::parse(TEST_MASTER_KEY).unwrap();
    let spend = havend::ledger::NewIntent {
        user: "aurora:g_s".into(),
        kind: havend::chain::CallKind::Burn,
        amount: hnv(70),
        reason: "spent at the bar".into(),
        source: "test:spend:g_s".into(),
        reverses: None,
    };
    havend::ledger::enqueue(db, &keys, spend).await.unwrap();
    setup.daemon.daemon().nudge_wallets();
    assert!(setup.holds("aurora:g_s", hnv(30)).await);
    setup.deliver(Partner::Aurora, Some("booking-cancelled"), &cancel("bk_s")).await;

    assert!(setup.holds("aurora:g_f", U256::ZERO).await, "the in-flight mint was burned after it confirmed");
    assert!(setup.holds("aurora:g_s", U256::ZERO).await, "the rest was burned");
    assert!(drained(&setup.daemon, Duration::from_secs(30)).await);
    let reversal = intent_of(&setup.daemon, "reversal:aurora:booking-created:bk_s").await;
    assert_eq!((reversal.status.as_str(), reversal.amount.as_str()), ("confirmed", hnv(30).to_string().as_str()));
    assert_eq!(reversal.shortfall.as_deref(), Some(hnv(70).to_string().as_str()), "the shortfall is recorded");
    assert_eq!(alerts(&setup.daemon, "reversal_shortfall").await.len(), 1);
    assert_eq!(setup.chain.total_supply().await, U256::ZERO);
    setup.reconcile_is_clean().await;
    setup.stop().await;
}

/// The cancellation of a booking whose mint sits in the mempool (broadcast,
/// no block mined): its reversal waits, looked at by the wallet actor on
/// every tick and never signed, until blocks are mined; then the mint
/// confirms first and the burn follows it, each exactly once.
async fn a_cancellation_while_its_mint_is_in_the_mempool_waits_and_burns_after_the_mint_confirms(backend: Backend) {
    use alloy::providers::ext::AnvilApi;
    // Automine while the token is deployed and the wallet equipped; then
    // a block is mined only when the test mines one.
    let setup = Setup::start_on_chain(TestChain::start(None).await, backend, |_| {}).await;
    let anvil = setup.chain.admin_provider();
    anvil.anvil_set_auto_mine(false).await.unwrap();
    let mint_source = "aurora:booking-created:bk_mp";
    setup.deliver(Partner::Aurora, Some("booking-created"), r#"{"id":"bk_mp","guest_id":"g_mp","total_price":"10","nights":1}"#).await;
    let broadcast = eventually(Duration::from_secs(20), || async {
        transactions::Entity::find().filter(transactions::Column::Source.eq(mint_source)).one(&setup.daemon.db).await.unwrap().is_some_and(|t| t.status == "broadcast")
    })
    .await;
    assert!(broadcast, "the mint was broadcast");
    let block_before = setup.chain.client().block_number().await.unwrap();

    setup.deliver(Partner::Aurora, Some("booking-cancelled"), r#"{"id":"bk_mp"}"#).await;
    assert!(setup.processed(Partner::Aurora, "booking-cancelled:bk_mp").await);
    let reversal = intent_of(&setup.daemon, &format!("reversal:{mint_source}")).await;
    // Proof the wallet actor looked at the reversal since it was queued: its ticks went on.
    let ticks = || async { setup.daemon.daemon().wallet_statuses().await[0].ticks };
    let seen = ticks().await;
    setup.daemon.daemon().nudge_wallets();
    assert!(eventually(Duration::from_secs(10), || async { ticks().await >= seen + 3 }).await, "the wallet actor kept ticking");
    assert_eq!(intent_of(&setup.daemon, &reversal.source).await.status, "queued", "the reversal waits for its mint");
    let burn_attempts = || async { entity::tx_attempts::Entity::find().filter(entity::tx_attempts::Column::TransactionId.eq(reversal.id)).count(&setup.daemon.db).await.unwrap() };
    assert_eq!(burn_attempts().await, 0, "nothing signed for the reversal while its mint is unmined");
    assert_eq!(intent_of(&setup.daemon, mint_source).await.status, "broadcast");
    assert_eq!(setup.chain.client().block_number().await.unwrap(), block_before, "no block was mined meanwhile");

    // Mine: the mint confirms, then the burn is signed and mined in a later block.
    let burned = eventually(Duration::from_secs(60), || async {
        anvil.anvil_mine(Some(1), None).await.unwrap();
        intent_of(&setup.daemon, &reversal.source).await.status == "confirmed"
    })
    .await;
    assert!(burned, "the reversal burned once its mint confirmed");
    let (mint, burn) = (intent_of(&setup.daemon, mint_source).await, intent_of(&setup.daemon, &reversal.source).await);
    assert_eq!(mint.status, "confirmed");
    assert!(burn.block_number > mint.block_number, "the burn was mined after the mint: {:?} vs {:?}", burn.block_number, mint.block_number);
    let first_burn_attempt = entity::tx_attempts::Entity::find()
        .filter(entity::tx_attempts::Column::TransactionId.eq(burn.id))
        .all(&setup.daemon.db)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.created_at)
        .min()
        .unwrap();
    assert!(first_burn_attempt >= mint.updated_at, "the burn was signed only after the mint was confirmed");
    assert!(setup.holds("aurora:g_mp", U256::ZERO).await);
    assert_eq!(setup.chain.total_supply().await, U256::ZERO);
    setup.reconcile_is_clean().await;
    drop(anvil);
    setup.stop().await;
}

/// Makes a waiting event due now (what its backoff would do later).
async fn force_due(daemon: &TestDaemon, key: &str) {
    use sea_orm::sea_query::Expr;
    webhook_events::Entity::update_many()
        .col_expr(webhook_events::Column::NextAttemptAt, Expr::value(Some(chrono::Utc::now())))
        .filter(webhook_events::Column::PartnerEventId.eq(key))
        .exec(&daemon.db)
        .await
        .unwrap();
}

/// SPEC: a booking's cancellation reverses the booking's reward only; the
/// review bonus earned on it stays.
async fn a_cancellation_does_not_reverse_the_review_bonus(backend: Backend) {
    let setup = Setup::start(backend).await;
    setup.deliver(Partner::Aurora, Some("booking-created"), r#"{"id":"bk_bonus","guest_id":"g_bonus","total_price":"10","nights":1}"#).await;
    setup.deliver(Partner::Aurora, Some("review-submitted"), r#"{"id":"rv_bonus","booking_id":"bk_bonus","guest_id":"g_bonus","rating":5}"#).await;
    assert!(setup.holds("aurora:g_bonus", hnv(70)).await, "20 for the booking, 50 for the review");
    setup.deliver(Partner::Aurora, Some("booking-cancelled"), r#"{"id":"bk_bonus"}"#).await;
    assert!(setup.processed(Partner::Aurora, "booking-cancelled:bk_bonus").await);
    assert!(setup.holds("aurora:g_bonus", hnv(50)).await, "the booking's 20 burned, the bonus kept");
    assert!(drained(&setup.daemon, Duration::from_secs(30)).await);
    let reversals: Vec<String> = transactions::Entity::find()
        .filter(transactions::Column::Source.starts_with("reversal:"))
        .all(&setup.daemon.db)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.source)
        .collect();
    assert_eq!(reversals, ["reversal:aurora:booking-created:bk_bonus"], "only the booking's reward is reversed");
    setup.reconcile_is_clean().await;
    setup.stop().await;
}

on_both_backends!(
    a_cancellation_does_not_reverse_the_review_bonus,
    signed_booking_mints_exactly_its_reward_and_cancellation_burns_it,
    a_cancellation_before_its_booking_leaves_a_tombstone,
    two_reviews_of_one_booking_earn_one_bonus,
    a_review_before_its_booking_waits_for_it,
    tribe_stripe_and_hi_events_rewards_follow_the_rules,
    a_mint_over_a_limit_is_held_and_released_once,
    a_deterministic_failure_is_dead_lettered_and_replayed_once,
    without_an_active_wallet_events_wait_and_are_not_dead_lettered,
    staking_pays_each_completed_week_once,
    a_backdated_stake_is_caught_up_a_year_per_run,
    a_cancellation_follows_its_mint_in_every_state,
    a_cancellation_while_its_mint_is_in_the_mempool_waits_and_burns_after_the_mint_confirms,
);
