//! Every signature scheme: accepted when right, 401 and nothing stored otherwise.

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
            r#"{"id":"evt_sig_1","type":"payment_intent.succeeded","data":{"object":{"amount_received":1000,"metadata":{"haven_user_id":"aurora:guest_001"}}}}"#.into(),
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
        assert_eq!(row.status, "pending");
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

on_both_backends!(
    correctly_signed_event_is_stored_once_for_every_scheme,
    bad_signatures_are_refused_with_401_and_store_nothing,
    both_active_secrets_are_accepted,
);
