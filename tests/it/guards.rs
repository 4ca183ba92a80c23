//! Intake guards: partner allowlists (403) and rate limits (429 with
//! `Retry-After`), the client IP taken from a trusted proxy's header only,
//! and nothing stored for a refused request. Mostly on SQLite: the guards
//! act before the database, so the backend does not matter to them.

use havend::config::Cidr;
use havend::webhooks::Partner;

use crate::on_both_backends;
use crate::support::*;

const BOOKING: &str = "/webhooks/aurora/booking-created";

fn cidrs(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|text| text.parse().unwrap()).collect()
}

/// Fresh booking body and its valid headers, plus `extra` headers.
fn signed_booking(extra: &[(&str, &str)]) -> (Vec<(String, String)>, String) {
    let body = booking_created(&format!("bk_{}", uuid::Uuid::new_v4().simple()));
    let mut headers = sign(Partner::Aurora, &body, now());
    headers.extend(extra.iter().map(|(name, value)| (name.to_string(), value.to_string())));
    (headers, body)
}

/// A booking whose signature is wrong, plus `extra` headers.
fn badly_signed_booking(extra: &[(&str, &str)]) -> (Vec<(String, String)>, String) {
    let body = booking_created("bk_forged");
    let mut headers = vec![
        ("X-Aurora-Signature".to_owned(), "00".repeat(32)),
        ("X-Aurora-Timestamp".to_owned(), now().to_string()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    headers.extend(extra.iter().map(|(name, value)| (name.to_string(), value.to_string())));
    (headers, body)
}

/// The `Retry-After` of a 429 in whole seconds (at least 1), checking the
/// error's shape and code on the way.
fn assert_rate_limited(answer: &Answer) -> u64 {
    assert_eq!(answer.status, 429, "{:?}", answer.json);
    assert_eq!(assert_error_shape(answer), "RATE_LIMITED");
    let retry_after: u64 = answer
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!(retry_after >= 1);
    assert_eq!(answer.json["details"]["retry_after_secs"], retry_after);
    retry_after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_over_its_rate_limit_gets_429_with_retry_after_and_nothing_is_stored() {
    let daemon = TestDaemon::start_with(Backend::Sqlite, |config| {
        let aurora = config.partners.get_mut(&Partner::Aurora).unwrap();
        aurora.rate_limit_per_sec = Some(1);
        aurora.rate_limit_burst = Some(3);
    })
    .await;
    // Requests take milliseconds, but a slow runner may earn back a token
    // (one per second): go on until the first refusal, within reason.
    let mut accepted = 0;
    let refused = loop {
        let (headers, body) = signed_booking(&[]);
        let answer = daemon.post(BOOKING, &headers, body).await;
        if answer.status != 200 {
            break answer;
        }
        accepted += 1;
        assert!(accepted <= 6, "a burst of 3 at 1/s is refused well before 7 requests");
    };
    assert!(accepted >= 3, "the burst is accepted");
    assert_rate_limited(&refused);
    assert_eq!(daemon.stored().await, accepted, "the refused request stored nothing");
    // Other partners have their own (here: no) limit.
    let body = r#"{"id":"tev_1","attendee_id":"m_1","type":"workshop","attended":true}"#;
    assert_eq!(daemon.deliver(Partner::Tribe, Some("event-attendance"), body).await.status, 200);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badly_signed_requests_do_not_spend_a_partners_quota() {
    let daemon = TestDaemon::start_with(Backend::Sqlite, |config| {
        let aurora = config.partners.get_mut(&Partner::Aurora).unwrap();
        aurora.rate_limit_per_sec = Some(1);
        aurora.rate_limit_burst = Some(2);
    })
    .await;
    for _ in 0..10 {
        let (headers, body) = badly_signed_booking(&[]);
        assert_eq!(daemon.post(BOOKING, &headers, body).await.status, 401);
    }
    for _ in 0..2 {
        let (headers, body) = signed_booking(&[]);
        let answer = daemon.post(BOOKING, &headers, body).await;
        assert_eq!(answer.status, 200, "the partner's burst is intact: {:?}", answer.json);
    }
    assert_eq!(daemon.stored().await, 2);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_outside_the_allowlist_gets_403_before_any_signature_work() {
    let daemon = TestDaemon::start_with(Backend::Sqlite, |config| {
        config.partners.get_mut(&Partner::Aurora).unwrap().allow_ips = Some(cidrs(&["10.0.0.0/8"]));
    })
    .await;
    // A wrong signature from a refused address: 403, not 401, so the
    // allowlist answered before the signature was computed.
    let (headers, body) = badly_signed_booking(&[]);
    let answer = daemon.post(BOOKING, &headers, body).await;
    assert_eq!(answer.status, 403, "{:?}", answer.json);
    assert_eq!(assert_error_shape(&answer), "IP_NOT_ALLOWED");
    // A correct one is refused alike.
    let (headers, body) = signed_booking(&[]);
    assert_eq!(daemon.post(BOOKING, &headers, body).await.status, 403);
    assert_eq!(daemon.stored().await, 0);
    // Partners without a list are not affected.
    let body = r#"{"id":"tev_2","attendee_id":"m_1","type":"workshop","attended":true}"#;
    assert_eq!(daemon.deliver(Partner::Tribe, Some("event-attendance"), body).await.status, 200);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_header_from_an_untrusted_peer_is_ignored() {
    let daemon = TestDaemon::start_with(Backend::Sqlite, |config| {
        config.partners.get_mut(&Partner::Aurora).unwrap().allow_ips = Some(cidrs(&["10.0.0.0/8"]));
        // Some proxy is trusted, but not the test's peer (127.0.0.1).
        config.server.trusted_proxies = cidrs(&["192.0.2.0/24"]);
    })
    .await;
    let (headers, body) = signed_booking(&[("X-Forwarded-For", "10.1.2.3")]);
    let answer = daemon.post(BOOKING, &headers, body).await;
    assert_eq!(answer.status, 403, "the spoofed 10.1.2.3 must not pass: {:?}", answer.json);
    assert_eq!(assert_error_shape(&answer), "IP_NOT_ALLOWED");
    assert_eq!(daemon.stored().await, 0);
    daemon.stop().await;
}

async fn a_trusted_proxys_header_names_the_client_and_is_stored_as_its_source_ip(backend: Backend) {
    let daemon = TestDaemon::start_with(backend, |config| {
        config.partners.get_mut(&Partner::Aurora).unwrap().allow_ips = Some(cidrs(&["10.0.0.0/8"]));
        config.server.trusted_proxies = cidrs(&["127.0.0.1/32"]);
    })
    .await;
    // The client may have sent its own X-Forwarded-For (6.6.6.6): only the
    // hop the trusted proxy appended, the right-most, counts.
    let body = booking_created("bk_forwarded");
    let mut headers = sign(Partner::Aurora, &body, now());
    headers.push(("X-Forwarded-For".into(), "6.6.6.6, 10.1.2.3".into()));
    let answer = daemon.post(BOOKING, &headers, body).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json);
    let row = daemon.event(Partner::Aurora, "booking-created:bk_forwarded").await.expect("stored");
    assert_eq!(row.source_ip.as_deref(), Some("10.1.2.3"));

    // The other way round, the client is 6.6.6.6, outside the list.
    let (mut headers, body) = signed_booking(&[]);
    headers.push(("X-Forwarded-For".into(), "10.1.2.3, 6.6.6.6".into()));
    assert_eq!(daemon.post(BOOKING, &headers, body).await.status, 403);
    assert_eq!(daemon.stored().await, 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_address_gets_429_before_the_signature_while_others_are_served() {
    let daemon = TestDaemon::start_with(Backend::Sqlite, |config| {
        config.webhooks.per_ip_rate_limit_per_sec = Some(1);
        config.webhooks.per_ip_rate_limit_burst = Some(2);
        // Clients told apart by the trusted proxy's header.
        config.server.trusted_proxies = cidrs(&["127.0.0.1/32"]);
    })
    .await;
    let flooder = [("X-Forwarded-For", "203.0.113.7")];
    // Badly signed requests count too: the per-IP limit acts before the
    // signature, and once over it even they get 429, not 401.
    let mut unauthorized = 0;
    let refused = loop {
        let (headers, body) = badly_signed_booking(&flooder);
        let answer = daemon.post(BOOKING, &headers, body).await;
        if answer.status != 401 {
            break answer;
        }
        unauthorized += 1;
        assert!(unauthorized <= 5, "a burst of 2 at 1/s is refused well before 6 requests");
    };
    assert!(unauthorized >= 2, "the burst is served");
    assert_rate_limited(&refused);
    // Still limited with a correct signature: nothing is stored.
    let (headers, body) = signed_booking(&flooder);
    let answer = daemon.post(BOOKING, &headers, body).await;
    assert_eq!(answer.status, 429, "{:?}", answer.json);
    assert_eq!(daemon.stored().await, 0);

    let (headers, body) = signed_booking(&[("X-Forwarded-For", "198.51.100.4")]);
    assert_eq!(daemon.post(BOOKING, &headers, body).await.status, 200, "another client has its own quota");
    assert_eq!(daemon.stored().await, 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_added_by_a_reload_applies_without_a_restart() {
    let partners = |extra: &str| format!("[partners.aurora]\nsecrets = [\"{AURORA_SECRET}\"]\n{extra}");
    let (daemon, dir) = TestDaemon::start_with_config_dir(Backend::Sqlite, "", &partners("")).await;
    for _ in 0..3 {
        let (headers, body) = signed_booking(&[]);
        assert_eq!(daemon.post(BOOKING, &headers, body).await.status, 200);
    }
    replace_file(&dir.join("partners.toml"), &partners("rate_limit_per_sec = 1\nrate_limit_burst = 1\n"));
    // The watcher may have applied the edit already; then this reload finds it unchanged.
    let report = daemon.daemon().reload().await.expect("the config actor answers");
    assert!(matches!(report.outcome, "applied" | "unchanged"), "{report:?}");
    let mut accepted = 0;
    let refused = loop {
        let (headers, body) = signed_booking(&[]);
        let answer = daemon.post(BOOKING, &headers, body).await;
        if answer.status != 200 {
            break answer;
        }
        accepted += 1;
        assert!(accepted <= 3, "the reloaded limit of 1/s applies");
    };
    assert_rate_limited(&refused);
    daemon.stop().await;
}

on_both_backends!(a_trusted_proxys_header_names_the_client_and_is_stored_as_its_source_ip);
