//! Bad input: a clear error in the SPEC's shape, and nothing stored.

use havend::webhooks::Partner;

use crate::on_both_backends;
use crate::support::*;

async fn invalid_payloads_are_refused_with_400_and_store_nothing(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let cases = [
        ("malformed JSON", r#"{"id":"bk_1","#.to_owned(), None),
        ("missing field", r#"{"id":"bk_1","total_price":"10","nights":1}"#.to_owned(), Some("guest_id")),
        ("negative amount", r#"{"id":"bk_1","guest_id":"g","total_price":-10,"nights":1}"#.to_owned(), Some("total_price")),
        // Acknowledged before issue 13, then panicked the processor at every claim.
        ("a price whose reward overflows", r#"{"id":"bk_1","guest_id":"g","total_price":"50000000000000000000000000000","nights":2}"#.to_owned(), Some("total_price")),
        ("ten years and a day", r#"{"id":"bk_1","guest_id":"g","total_price":"10","nights":3651}"#.to_owned(), Some("nights")),
    ];
    for (what, body, field) in cases {
        let answer = daemon.deliver(Partner::Aurora, Some("booking-created"), &body).await;
        assert_eq!(answer.status, 400, "{what}: {:?}", answer.json);
        assert_eq!(assert_error_shape(&answer), "VALIDATION_ERROR");
        if let Some(field) = field {
            assert_eq!(answer.json["details"]["field"], field, "{what}");
        }
    }
    assert_eq!(daemon.stored().await, 0);
    daemon.stop().await;
}

/// Issue 13, section 1: every field the domain tables keep is bounded at
/// intake. Each of these was acknowledged before, then failed (or froze) later.
async fn values_no_column_could_keep_are_refused_at_intake_and_store_nothing(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let far = (chrono::Utc::now() + chrono::Duration::minutes(5)).to_rfc3339();
    let cases = [
        (Partner::Aurora, "booking-created", format!(r#"{{"id":"bk_1","guest_id":"{}","total_price":"10","nights":1}}"#, "g".repeat(250)), "guest_id"),
        (Partner::Aurora, "booking-cancelled", r#"{"id":"bk\u0000nul"}"#.to_owned(), "id"),
        (Partner::Aurora, "booking-completed", format!(r#"{{"id":"{}"}}"#, "b".repeat(220)), "id"),
        (Partner::Tribe, "event-attendance", format!(r#"{{"id":"t","attendee_id":"m","type":"{}","attended":true}}"#, "w".repeat(129)), "type"),
        (Partner::Tribe, "staking-started", format!(r#"{{"id":"s","user_id":"u","amount":"10","started_at":"{far}"}}"#), "started_at"),
        (Partner::Tribe, "contribution", r#"{"id":"c","user_id":"u\ttab","quality_score":1}"#.to_owned(), "user_id"),
        (Partner::HiEvents, "event-status-changed", r#"{"event_id":"e","status":"LIVE","updated_at":"9999-12-31T00:00:00Z"}"#.to_owned(), "updated_at"),
    ];
    for (partner, event, body, field) in cases {
        let answer = daemon.deliver(partner, Some(event), &body).await;
        assert_eq!(answer.status, 400, "{partner}/{event} {field}: {:?}", answer.json);
        assert_eq!(assert_error_shape(&answer), "VALIDATION_ERROR");
        assert_eq!(answer.json["details"]["field"], field, "{partner}/{event}");
    }
    assert_eq!(daemon.stored().await, 0);
    daemon.stop().await;
}

async fn body_over_the_limit_is_refused_with_413(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let padding = "x".repeat(300 * 1024);
    let body = format!(r#"{{"id":"bk_big","guest_id":"g","total_price":"1","nights":1,"note":"{padding}"}}"#);
    let answer = daemon.deliver(Partner::Aurora, Some("booking-created"), &body).await;
    assert_eq!(answer.status, 413);
    assert_eq!(assert_error_shape(&answer), "PAYLOAD_TOO_LARGE");
    assert_eq!(daemon.stored().await, 0);
    daemon.stop().await;
}

/// A chunked body declares no length: the limit applies while it is read.
async fn chunked_body_over_the_limit_is_refused_with_413(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let daemon = TestDaemon::start_with(backend, |c| c.server.body_limit_bytes = 4096).await;
    let head = "POST /webhooks/aurora/booking-created HTTP/1.1\r\nHost: havend\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let mut stream = raw_request(daemon.addr, head.as_bytes()).await;
    let chunk = format!("400\r\n{}\r\n", "x".repeat(0x400));
    for _ in 0..8 {
        // The server may answer and stop reading once the limit is passed.
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("PAYLOAD_TOO_LARGE"), "{response}");
    assert_eq!(daemon.stored().await, 0);
    daemon.stop().await;
}

async fn unknown_partner_or_event_is_404(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let body = booking_created("bk_404");
    for path in ["/webhooks/acme/booking-created", "/webhooks/aurora/booking-exploded", "/webhooks/stripe/payment", "/nowhere"] {
        let answer = daemon.post(path, &sign(Partner::Aurora, &body, now()), body.clone()).await;
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(assert_error_shape(&answer), "NOT_FOUND");
    }
    let answer = daemon.get("/webhooks/aurora/booking-created").await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.headers.get("allow").map(|v| v.to_str().unwrap()), Some("POST"), "RFC 9110: a 405 names the allowed methods");
    assert_eq!(daemon.stored().await, 0);
    daemon.stop().await;
}

async fn signed_stripe_event_havend_does_not_handle_is_stored_as_ignored(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let body = r#"{"id":"evt_customer_1","type":"customer.created","data":{"object":{"id":"cus_1"}}}"#;
    let answer = daemon.deliver(Partner::Stripe, None, body).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json);
    assert_eq!(answer.json["status"], "ignored");
    let row = daemon.event(Partner::Stripe, "evt_customer_1").await.unwrap();
    assert_eq!((row.status.as_str(), row.next_attempt_at), ("ignored", None));

    let unusable = r#"{"id":"evt_pi_nouser","type":"payment_intent.succeeded","data":{"object":{"amount_received":100,"metadata":{}}}}"#;
    let answer = daemon.deliver(Partner::Stripe, None, unusable).await;
    assert_eq!((answer.status, answer.json["status"].as_str()), (200, Some("invalid")));
    let row = daemon.event(Partner::Stripe, "evt_pi_nouser").await.unwrap();
    assert!(row.last_error.unwrap().contains("haven_user_id"));
    daemon.stop().await;
}

on_both_backends!(
    invalid_payloads_are_refused_with_400_and_store_nothing,
    values_no_column_could_keep_are_refused_at_intake_and_store_nothing,
    body_over_the_limit_is_refused_with_413,
    chunked_body_over_the_limit_is_refused_with_413,
    unknown_partner_or_event_is_404,
    signed_stripe_event_havend_does_not_handle_is_stored_as_ignored,
);
