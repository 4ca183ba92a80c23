//! Stored inbox bodies read back as typed events. The same field readers
//! validated them at intake, so a body that was stored reads back the same.

use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::webhooks::payload::Fields;
use crate::webhooks::{Partner, PayloadError};

/// What one partner event says, in the terms the handlers need.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    /// aurora/booking-created.
    BookingCreated { booking: String, guest: String, total_price: Decimal, nights: i64 },
    /// aurora/booking-completed.
    BookingCompleted { booking: String },
    /// aurora/booking-cancelled.
    BookingCancelled { booking: String },
    /// aurora/review-submitted.
    ReviewSubmitted { booking: String, guest: String, rating: i64 },
    /// tribe/event-attendance.
    Attendance { event: String, attendee: String, kind: String, attended: bool },
    /// tribe/contribution.
    Contribution { id: String, user: String, quality: Decimal },
    /// tribe/staking-started.
    StakingStarted { id: String, user: String, amount: Decimal, started_at: Option<DateTime<Utc>> },
    /// tribe/coaching-milestone.
    CoachingMilestone { id: String, user: String, milestone: String },
    /// tribe/referral-success.
    Referral { id: String, referrer: String, tier: String },
    /// stripe payment_intent.succeeded.
    StripePayment { user: String, amount_minor: i64, currency: String },
    /// stripe payout.paid / payout.failed.
    StripePayout { redemption: String, paid: bool },
    /// hi-events/event-status-changed.
    TicketingStatusChanged { event: String, status: String, updated_at: DateTime<Utc> },
}

/// Reads a stored body as `partner`'s `event_type`.
pub fn read(partner: Partner, event_type: &str, body: &[u8]) -> Result<EventData, PayloadError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| PayloadError::MalformedJson(e.to_string()))?;
    let Value::Object(object) = &value else { return Err(PayloadError::NotAnObject) };
    let f = Fields(object);
    let data = match (partner, event_type) {
        (Partner::Aurora, "booking-created") => EventData::BookingCreated {
            booking: f.primary_id(&["booking_id"])?,
            guest: f.id("guest_id")?,
            total_price: f.positive_decimal("total_price")?,
            nights: f.integer_in("nights", 1, i64::MAX)?,
        },
        (Partner::Aurora, "booking-completed") => EventData::BookingCompleted { booking: f.primary_id(&["booking_id"])? },
        (Partner::Aurora, "booking-cancelled") => EventData::BookingCancelled { booking: f.primary_id(&["booking_id"])? },
        (Partner::Aurora, "review-submitted") => EventData::ReviewSubmitted {
            booking: f.id("booking_id")?,
            guest: f.id("guest_id")?,
            rating: f.integer_in("rating", 1, 5)?,
        },
        (Partner::Tribe, "event-attendance") => EventData::Attendance {
            event: f.primary_id(&["event_id"])?,
            attendee: f.id("attendee_id")?,
            kind: f.text("type")?,
            attended: f.boolean("attended")?,
        },
        (Partner::Tribe, "contribution") => EventData::Contribution {
            id: f.primary_id(&["event_id"])?,
            user: f.id("user_id")?,
            quality: f.decimal("quality_score")?,
        },
        (Partner::Tribe, "staking-started") => EventData::StakingStarted {
            id: f.primary_id(&["event_id"])?,
            user: f.id("user_id")?,
            amount: f.positive_decimal("amount")?,
            started_at: match f.get("started_at") {
                Some(_) => Some(instant(&f.timestamp("started_at")?).ok_or_else(|| bad_time("started_at"))?),
                None => None,
            },
        },
        (Partner::Tribe, "coaching-milestone") => EventData::CoachingMilestone {
            id: f.primary_id(&["event_id"])?,
            user: f.id("user_id")?,
            milestone: f.id("milestone")?,
        },
        (Partner::Tribe, "referral-success") => EventData::Referral {
            id: f.primary_id(&["event_id"])?,
            referrer: f.id("referrer_id")?,
            tier: f.text("tier")?,
        },
        (Partner::HiEvents, "event-status-changed") => EventData::TicketingStatusChanged {
            event: f.primary_id(&["event_id"])?,
            status: f.text("status")?,
            updated_at: instant(&f.timestamp("updated_at")?).ok_or_else(|| bad_time("updated_at"))?,
        },
        (Partner::Stripe, "payment_intent.succeeded") => {
            let object = stripe_object(object);
            EventData::StripePayment {
                user: stripe_user(metadata(object, "haven_user_id").ok_or_else(|| PayloadError::MissingField("metadata.haven_user_id".into()))?),
                amount_minor: object
                    .and_then(|o| o.get("amount_received").or_else(|| o.get("amount")))
                    .and_then(Value::as_i64)
                    .filter(|a| *a > 0)
                    .ok_or_else(|| PayloadError::MissingField("amount_received".into()))?,
                currency: object
                    .and_then(|o| o.get("currency"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| PayloadError::MissingField("currency".into()))?
                    .to_owned(),
            }
        }
        (Partner::Stripe, "payout.paid" | "payout.failed") => EventData::StripePayout {
            redemption: metadata(stripe_object(object), "redemption_id")
                .ok_or_else(|| PayloadError::MissingField("metadata.redemption_id".into()))?
                .to_owned(),
            paid: event_type == "payout.paid",
        },
        _ => return Err(PayloadError::MissingField("a known event".into())),
    };
    Ok(data)
}

fn stripe_object(event: &serde_json::Map<String, Value>) -> Option<&Value> {
    event.get("data").and_then(|d| d.get("object"))
}

fn metadata<'a>(object: Option<&'a Value>, key: &str) -> Option<&'a str> {
    object.and_then(|o| o.get("metadata")).and_then(|m| m.get(key)).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

/// Stripe's `metadata.haven_user_id`: `{partner}:{id}` as is, havend's own
/// user id as is (resolved later), a bare id as `stripe:{id}`.
pub fn stripe_user(reference: &str) -> String {
    let reference = reference.trim();
    let partner_ref = reference.split_once(':').is_some_and(|(p, _)| p.parse::<Partner>().is_ok());
    if partner_ref || uuid::Uuid::parse_str(reference).is_ok() {
        reference.to_owned()
    } else {
        format!("stripe:{reference}")
    }
}

/// A timestamp as intake accepted it, as a UTC instant.
fn instant(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return Some(t.and_utc());
    }
    text.parse::<i64>().ok().and_then(|s| DateTime::from_timestamp(s, 0))
}

fn bad_time(field: &str) -> PayloadError {
    PayloadError::InvalidField { field: field.into(), problem: "not a valid point in time".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_booking_reads_back_exactly_in_either_case_style() {
        let body = br#"{"bookingId":"bk_1","guestId":"g1","totalPrice":"200.10","nights":2}"#;
        assert_eq!(
            read(Partner::Aurora, "booking-created", body).unwrap(),
            EventData::BookingCreated { booking: "bk_1".into(), guest: "g1".into(), total_price: "200.10".parse().unwrap(), nights: 2 }
        );
    }

    #[test]
    fn ticketing_times_with_any_offset_are_utc_instants() {
        let read_at = |t: &str| match read(Partner::HiEvents, "event-status-changed", format!(r#"{{"event_id":1,"status":"LIVE","updated_at":"{t}"}}"#).as_bytes()).unwrap() {
            EventData::TicketingStatusChanged { updated_at, .. } => updated_at,
            other => panic!("{other:?}"),
        };
        assert_eq!(read_at("2026-11-01T12:00:00+02:00"), read_at("2026-11-01T10:00:00Z"));
        assert_eq!(read_at("2026-11-01 10:00:00"), read_at("2026-11-01T10:00:00Z"));
    }

    #[test]
    fn stripe_user_references_follow_the_spec() {
        assert_eq!(stripe_user("aurora:guest_001"), "aurora:guest_001");
        assert_eq!(stripe_user("cus_123"), "stripe:cus_123");
        assert_eq!(stripe_user("weird:thing"), "stripe:weird:thing");
        let own = "0190a5c2-7d2e-7c4a-9b1e-2f3a4b5c6d7e";
        assert_eq!(stripe_user(own), own);
    }

    #[test]
    fn a_stripe_payment_reads_amount_and_currency() {
        let body = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"amount_received":1999,"currency":"cad","metadata":{"haven_user_id":"g7"}}}}"#;
        assert_eq!(
            read(Partner::Stripe, "payment_intent.succeeded", body).unwrap(),
            EventData::StripePayment { user: "stripe:g7".into(), amount_minor: 1999, currency: "cad".into() }
        );
    }
}
