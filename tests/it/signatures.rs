//! Every signature scheme: accepted when right, 401 and nothing stored otherwise.

use havend::config::Secret;
use havend::webhooks::signature::Signed;
use havend::webhooks::{Partner, Scheme};

use crate::on_both_backends;
use crate::support::*;

/// One valid event per scheme: Aurora (haven-hmac), Stripe, Hi.Events (Standard Webhooks).
fn cases() -> Vec<(Partner, Option<&'static str>, String, &'static str)> {
    vec![
        (Partner::Aurora, Some("booking-created"), booking_created("bk_sig"), "booking-created:bk_sig"),
        (
            Partner::Stripe,
            None,
            r#"{"id":"evt_sig_1","type":"payment_intent.succeeded","data":{"object":{"amount_received":1000,"currency":"cad","metadata":{"haven_user_id":"aurora:guest_001"}}}}"#.into(),
            "evt_sig_1",
        ),
        (
            Partner::HiEvents,
            Some("event-status-changed"),
            r#"{"event_id":"he_1","status":"LIVE","updated_at":"2026-11-01T10:00:00Z"}"#.into(),
            "event-status-changed:he_1:LIVE:2026-11-01T10%3A00%3A00Z",
        ),
    ]
}

async fn correctly_signed_event_is_stored_once_for_every_scheme(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    for (partner, event, body, partner_event_id) in cases() {
        let answer = daemon.deliver(partner, event, &body).await;
        assert_eq!(answer.status, 200, "{partner}: {:?}", answer.json);
        assert_eq!(answer.json["duplicate"], false);
        let row = daemon.event(partner, partner_event_id).await.expect("row stored");
        assert_eq!(row.body, body.as_bytes(), "raw body stored byte for byte");
        // Stored for the processor, which may already have finished with it.
        assert!(["pending", "processed"].contains(&row.status.as_str()), "{}", row.status);
    }
    assert_eq!(daemon.stored().await, 3);
    daemon.stop().await;
}

async fn bad_signatures_are_refused_with_401_and_store_nothing(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let schemes = [(Partner::Aurora, Scheme::HavenHmac), (Partner::Stripe, Scheme::Stripe), (Partner::HiEvents, Scheme::StandardWebhooks)];
    for ((partner, event, body, _), (_, scheme)) in cases().into_iter().zip(schemes) {
        let path = webhook_path(partner, event);
        let wrong_secret = if scheme == Scheme::StandardWebhooks { "whsec_d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==" } else { "wrong" };
        let attempts = [
            ("wrong secret", sign_with(partner, scheme, wrong_secret, &body, now())),
            ("missing header", Vec::new()),
            // Margins beyond 300 s / 60 s so a slow test machine cannot bring them back into the window.
            ("stale timestamp", sign(partner, &body, now() - 330)),
            ("future timestamp", sign(partner, &body, now() + 75)),
        ];
        for (what, headers) in attempts {
            let answer = daemon.post(&path, &headers, body.clone()).await;
            assert_eq!(answer.status, 401, "{partner} {what}: {:?}", answer.json);
            assert_eq!(assert_error_shape(&answer), "INVALID_SIGNATURE");
        }
    }
    assert_eq!(daemon.stored().await, 0, "nothing stored for a refused signature");
    daemon.stop().await;
}

async fn both_active_secrets_are_accepted(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    for (index, secret) in [AURORA_SECRET, AURORA_OLD_SECRET].into_iter().enumerate() {
        let body = booking_created(&format!("bk_rot_{index}"));
        let headers = sign_with(Partner::Aurora, Scheme::HavenHmac, secret, &body, now());
        let answer = daemon.post("/webhooks/aurora/booking-created", &headers, body).await;
        assert_eq!(answer.status, 200, "secret #{index}: {:?}", answer.json);
    }
    assert_eq!(daemon.stored().await, 2);
    daemon.stop().await;
}

/// SPEC section 2, `sign_event`: the signature covers the URL's event, so a
/// booking body signed for `booking-created` is refused at `booking-cancelled`.
async fn sign_event_partner_refuses_a_body_replayed_to_another_event(backend: Backend) {
    let daemon = TestDaemon::start_with(backend, |c| {
        c.partners.get_mut(&Partner::Aurora).unwrap().sign_event = true;
    })
    .await;
    let body = booking_created("bk_bound");
    let bound = |event: &str| {
        let mut headers = Scheme::HavenHmac
            .sign(Partner::Aurora, &Secret::new(AURORA_SECRET), Signed::event_and_body(event, body.as_bytes()), now(), "")
            .unwrap();
        headers.push(("content-type".into(), "application/json".into()));
        headers
    };
    let created = bound("booking-created");
    let replayed = daemon.post("/webhooks/aurora/booking-cancelled", &created, body.clone()).await;
    assert_eq!(replayed.status, 401, "{:?}", replayed.json);
    assert_eq!(assert_error_shape(&replayed), "INVALID_SIGNATURE");
    let body_only = daemon.post("/webhooks/aurora/booking-created", &sign(Partner::Aurora, &body, now()), body.clone()).await;
    assert_eq!(body_only.status, 401, "a body-only signature is not enough: {:?}", body_only.json);
    assert_eq!(daemon.stored().await, 0);

    let accepted = daemon.post("/webhooks/aurora/booking-created", &created, body.clone()).await;
    assert_eq!(accepted.status, 200, "{:?}", accepted.json);
    assert!(daemon.event(Partner::Aurora, "booking-created:bk_bound").await.is_some());
    assert!(daemon.event(Partner::Aurora, "booking-cancelled:bk_bound").await.is_none());
    daemon.stop().await;
}

/// SPEC section 2: a payload `event` or `type` naming another event than the
/// URL is refused with 400 (here without `sign_event`, for the other schemes' sake).
async fn payload_naming_another_event_than_the_url_is_refused_with_400(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let cases = [
        (Partner::Aurora, "booking-cancelled", r#"{"event":"booking-created","id":"bk_named","guest_id":"g","total_price":"1","nights":1}"#, "event"),
        (Partner::Tribe, "contribution", r#"{"type":"referral_success","id":"c_1","user_id":"u","quality_score":1,"referrer_id":"u","tier":"gold"}"#, "type"),
    ];
    for (partner, event, body, field) in cases {
        let answer = daemon.deliver(partner, Some(event), body).await;
        assert_eq!(answer.status, 400, "{partner}/{event}: {:?}", answer.json);
        assert_eq!(assert_error_shape(&answer), "VALIDATION_ERROR");
        assert_eq!(answer.json["details"]["field"], field);
    }
    assert_eq!(daemon.stored().await, 0);
    let named_right = r#"{"event":"booking.cancelled","id":"bk_named"}"#;
    let answer = daemon.deliver(Partner::Aurora, Some("booking-cancelled"), named_right).await;
    assert_eq!(answer.status, 200, "the URL's own event, in the partner's spelling: {:?}", answer.json);
    daemon.stop().await;
}

on_both_backends!(
    sign_event_partner_refuses_a_body_replayed_to_another_event,
    payload_naming_another_event_than_the_url_is_refused_with_400,
    correctly_signed_event_is_stored_once_for_every_scheme,
    bad_signatures_are_refused_with_401_and_store_nothing,
    both_active_secrets_are_accepted,
);

/// haven-hmac against a vector computed outside havend's code, with OpenSSL
/// (as Stripe's and Standard Webhooks' are checked against their SDKs'):
///
/// ```sh
/// B='{"id":"bk_openssl","guest_id":"guest_001","total_price":"330.50","nights":2}'
/// printf '%s' "1764633600.$B" | openssl dgst -sha256 -hmac 'aurora-openssl-fixture-secret'
/// # SHA2-256(stdin)= cbac13deb7974b016544ba36781cdcb8fe8206e5068139460b626be0e5dc58f4
/// printf '%s' "1764633600.booking-created.$B" | openssl dgst -sha256 -hmac 'aurora-openssl-fixture-secret'
/// # SHA2-256(stdin)= ff94702c5f2d2a481d487da5a8ae91b0524425ff7cd6a74073a04a1e71607298
/// ```
#[test]
fn haven_hmac_matches_a_vector_computed_with_openssl() {
    use havend::webhooks::signature::Window;
    const SECRET: &str = "aurora-openssl-fixture-secret";
    const BODY: &str = r#"{"id":"bk_openssl","guest_id":"guest_001","total_price":"330.50","nights":2}"#;
    const TIMESTAMP: i64 = 1_764_633_600;
    const BODY_ONLY: &str = "cbac13deb7974b016544ba36781cdcb8fe8206e5068139460b626be0e5dc58f4";
    const WITH_EVENT: &str = "ff94702c5f2d2a481d487da5a8ae91b0524425ff7cd6a74073a04a1e71607298";
    let secret = Secret::new(SECRET);
    let window = Window { past_secs: 300, future_secs: 60 };
    let headers = |signature: &str| {
        let mut map = http::HeaderMap::new();
        map.insert("x-aurora-signature", signature.parse().unwrap());
        map.insert("x-aurora-timestamp", TIMESTAMP.to_string().parse().unwrap());
        map
    };
    let verify = |signature: &str, signed: Signed<'_>| {
        Scheme::HavenHmac.verify(Partner::Aurora, &headers(signature), signed, std::slice::from_ref(&secret), TIMESTAMP, window).is_ok()
    };
    let body_only = Signed::from(BODY.as_bytes());
    let with_event = Signed::event_and_body("booking-created", BODY.as_bytes());
    assert!(verify(BODY_ONLY, body_only), "OpenSSL's signature over the body verifies");
    assert!(verify(&format!("sha256={BODY_ONLY}"), body_only), "also with the sha256= prefix");
    assert!(verify(WITH_EVENT, with_event), "OpenSSL's signature over the event and body verifies");
    assert!(!verify(BODY_ONLY, with_event) && !verify(WITH_EVENT, body_only), "each signs exactly its own content");
    let tampered = format!("{}0", &BODY_ONLY[..BODY_ONLY.len() - 1]);
    assert!(!verify(&tampered, body_only));

    // And havend signs exactly what OpenSSL computed.
    let signature_of = |signed: Signed<'_>| {
        let headers = Scheme::HavenHmac.sign(Partner::Aurora, &secret, signed, TIMESTAMP, "").unwrap();
        headers.into_iter().find(|(name, _)| name.eq_ignore_ascii_case("x-aurora-signature")).unwrap().1
    };
    assert_eq!(signature_of(body_only).trim_start_matches("sha256="), BODY_ONLY);
    assert_eq!(signature_of(with_event).trim_start_matches("sha256="), WITH_EVENT);
}
