//! Payload validation for every partner event of SPEC section 2 (through
//! the one schema in [`super::event`]), and the "partner event id" each one
//! is deduplicated by.
//!
//! Fields are accepted in snake_case and camelCase. Key parts are
//! percent-encoded and joined by `:` so no two events share an id by accident
//! (`event-attendance:tev_9:m_1`).

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use super::Partner;
use super::event::{self, EventData, MAX_EVENT_TYPE_LEN, MAX_PARTNER_EVENT_ID_LEN, STRIPE_HANDLED};

/// Bytes left as they are in a key part; everything else (`:` above all) is encoded.
const KEY_PART: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// What becomes of a validated event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Stored as `pending`: the rewards processor will act on it.
    Pending,
    /// A signed Stripe event of a type havend does not handle (stored, 200).
    Ignored(String),
    /// A signed Stripe event havend cannot use, e.g. without `metadata.haven_user_id` (stored, 200).
    Invalid(String),
}

/// A validated partner event, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEvent {
    /// The event name (`booking-created`, or Stripe's `payment_intent.succeeded`).
    pub event_type: String,
    /// The deduplication key, from the signed payload only.
    pub partner_event_id: String,
    /// Whether it waits for processing or is only recorded.
    pub disposition: Disposition,
}

/// Why a payload was refused (400; nothing is stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The body is not JSON.
    #[error("body is not valid JSON: {0}")]
    MalformedJson(String),
    /// The body is JSON but not an object.
    #[error("body must be a JSON object")]
    NotAnObject,
    /// A required field is absent or null.
    #[error("missing required field {0}")]
    MissingField(String),
    /// The payload's `event` or `type` names another event than the URL: a
    /// body signed for one event replayed to another (SPEC section 2).
    #[error("field {field} names event {named:?}, but the URL names {url:?}")]
    EventMismatch {
        /// `event` or `type`.
        field: String,
        /// The event the payload names.
        named: String,
        /// The event the URL names.
        url: String,
    },
    /// A field is present but its value is not acceptable.
    #[error("field {field}: {problem}")]
    InvalidField {
        /// The field, as named in SPEC (snake_case).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl PayloadError {
    /// The field this error is about, for the error's `details`.
    pub fn field(&self) -> Option<&str> {
        match self {
            PayloadError::MissingField(field)
            | PayloadError::InvalidField { field, .. }
            | PayloadError::EventMismatch { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Whether `partner` sends `event` (the URL path part); false → 404.
pub fn is_known_event(partner: Partner, event: &str) -> bool {
    event::spec(partner, event).is_some()
}

/// Validates `body` as `partner`'s `event` (None for Stripe, which names the
/// type in the body) against the event's schema, and derives its partner
/// event id. `now` is the receiver's clock (timestamps may not lie past it).
pub fn parse(partner: Partner, event: Option<&str>, body: &[u8], now: DateTime<Utc>) -> Result<ParsedEvent, PayloadError> {
    let object = object_of(body)?;
    let fields = Fields(&object);
    match (partner, event) {
        (Partner::Stripe, _) => parse_stripe(&fields),
        (_, Some(event)) => {
            let spec = event::spec(partner, event).ok_or_else(|| PayloadError::MissingField("a known event".into()))?;
            check_named_event(partner, event, &fields)?;
            let decoded = event::decode(spec, &fields, now)?;
            let partner_event_id = partner_event_id(event, &decoded.key);
            if partner_event_id.len() > MAX_PARTNER_EVENT_ID_LEN {
                // Each key part is bounded; their sum is bounded here, named by the first.
                let first = spec.fields.iter().find(|f| f.key).map_or("id", |f| f.name);
                return Err(invalid(first, &format!("the event's key is over {MAX_PARTNER_EVENT_ID_LEN} characters once percent-encoded")));
            }
            Ok(ParsedEvent { event_type: event.to_owned(), partner_event_id, disposition: Disposition::Pending })
        }
        (_, None) => Err(PayloadError::MissingField("event".into())),
    }
}

/// Reads a stored body as `partner`'s `event_type`, through the same schema
/// that admitted it.
pub fn read(partner: Partner, event_type: &str, body: &[u8], now: DateTime<Utc>) -> Result<EventData, PayloadError> {
    let object = object_of(body)?;
    match partner {
        Partner::Stripe => event::decode_stripe(event_type, &object).map_err(|problem| invalid("data.object", &problem)),
        _ => {
            let spec = event::spec(partner, event_type).ok_or_else(|| PayloadError::MissingField("a known event".into()))?;
            Ok(event::decode(spec, &Fields(&object), now)?.data)
        }
    }
}

fn object_of(body: &[u8]) -> Result<Map<String, Value>, PayloadError> {
    match serde_json::from_slice(body).map_err(|e| PayloadError::MalformedJson(e.to_string()))? {
        Value::Object(object) => Ok(object),
        _ => Err(PayloadError::NotAnObject),
    }
}

/// Payload fields in which partners name the event they send.
const EVENT_NAME_FIELDS: [&str; 2] = ["event", "type"];

/// Refuses a payload whose `event` or `type` names another of the partner's
/// events than the URL. Only values that name one of the partner's events
/// count, compared case-insensitively with `_` and `.` read as `-`
/// (`booking.cancelled`, `BOOKING_CANCELLED`): Tribe's `event-attendance`
/// carries an unrelated `type` (`workshop`, …) that must not be refused.
fn check_named_event(partner: Partner, url_event: &str, fields: &Fields) -> Result<(), PayloadError> {
    let known = |name: &str| event::spec(partner, name).is_some();
    for field in EVENT_NAME_FIELDS {
        let Some(Value::String(value)) = fields.0.get(field) else { continue };
        let named: String =
            value.trim().chars().map(|c| if matches!(c, '_' | '.') { '-' } else { c.to_ascii_lowercase() }).collect();
        if named != url_event && known(&named) {
            return Err(PayloadError::EventMismatch { field: field.into(), named: value.clone(), url: url_event.into() });
        }
    }
    Ok(())
}

/// `"{event}:{part}:{part}"` with each part percent-encoded (SPEC section 2).
pub fn partner_event_id(event: &str, parts: &[String]) -> String {
    let mut id = utf8_percent_encode(event, KEY_PART).to_string();
    for part in parts {
        id.push(':');
        id.extend(utf8_percent_encode(part, KEY_PART));
    }
    id
}

/// Length of `text` once percent-encoded as a key part.
pub fn encoded_len(text: &str) -> usize {
    utf8_percent_encode(text, KEY_PART).map(str::len).sum()
}

/// A Stripe event: its `id` is the key as sent, so it is bounded as a key;
/// what havend cannot use is stored as `ignored` or `invalid`, never refused.
fn parse_stripe(f: &Fields) -> Result<ParsedEvent, PayloadError> {
    let id = stripe_text(f, "id", MAX_PARTNER_EVENT_ID_LEN)?;
    let event_type = stripe_text(f, "type", MAX_EVENT_TYPE_LEN)?;
    let disposition = if !STRIPE_HANDLED.contains(&event_type.as_str()) {
        Disposition::Ignored(format!("unhandled event type {event_type}"))
    } else {
        match event::decode_stripe(&event_type, f.0) {
            Ok(_) => Disposition::Pending,
            Err(problem) => Disposition::Invalid(problem),
        }
    };
    Ok(ParsedEvent { event_type, partner_event_id: id, disposition })
}

/// A Stripe string the inbox stores as is: present, bounded, no control characters.
fn stripe_text(f: &Fields, field: &str, max: usize) -> Result<String, PayloadError> {
    match f.require(field)? {
        Value::String(s) if !s.trim().is_empty() && s.chars().count() <= max && !event::has_control(s) => Ok(s.clone()),
        _ => Err(invalid(field, &format!("must be a non-empty string of at most {max} characters without control characters"))),
    }
}

pub(crate) fn invalid(field: &str, problem: &str) -> PayloadError {
    PayloadError::InvalidField { field: field.into(), problem: problem.into() }
}

/// A JSON object read by snake_case field names, accepting camelCase too.
pub(crate) struct Fields<'a>(pub(crate) &'a Map<String, Value>);

impl Fields<'_> {
    /// The field's value (null counts as absent).
    pub(crate) fn get(&self, field: &str) -> Option<&Value> {
        self.0
            .get(field)
            .or_else(|| self.0.get(&camel_case(field)))
            .filter(|v| !v.is_null())
    }

    /// The field's value, or a `MissingField` error.
    pub(crate) fn require(&self, field: &str) -> Result<&Value, PayloadError> {
        self.get(field).ok_or_else(|| PayloadError::MissingField(field.into()))
    }

}

fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-02T12:00:00Z".parse().unwrap()
    }

    fn ok(partner: Partner, event: &str, body: &str) -> ParsedEvent {
        parse(partner, Some(event), body.as_bytes(), now()).unwrap()
    }

    fn err(partner: Partner, event: &str, body: &str) -> PayloadError {
        parse(partner, Some(event), body.as_bytes(), now()).unwrap_err()
    }

    #[test]
    fn booking_created_accepts_snake_and_camel_case() {
        let snake = ok(Partner::Aurora, "booking-created", r#"{"id":"bk_123","guest_id":"g1","total_price":"330.5","nights":2}"#);
        let camel = ok(Partner::Aurora, "booking-created", r#"{"id":"bk_123","guestId":"g1","totalPrice":330.5,"nights":2}"#);
        assert_eq!(snake.partner_event_id, "booking-created:bk_123");
        assert_eq!(snake, camel);
    }

    #[test]
    fn booking_id_stands_in_for_id() {
        let event = ok(Partner::Aurora, "booking-cancelled", r#"{"bookingId":"bk_9"}"#);
        assert_eq!(event.partner_event_id, "booking-cancelled:bk_9");
    }

    #[test]
    fn created_and_cancelled_of_one_booking_are_two_events() {
        let created = ok(Partner::Aurora, "booking-created", r#"{"id":"bk_1","guest_id":"g","total_price":10,"nights":1}"#);
        let cancelled = ok(Partner::Aurora, "booking-cancelled", r#"{"id":"bk_1"}"#);
        assert_ne!(created.partner_event_id, cancelled.partner_event_id);
    }

    #[test]
    fn attendance_key_includes_the_attendee() {
        let body = |a: &str| format!(r#"{{"id":"tev_9","attendee_id":"{a}","type":"workshop","attended":true}}"#);
        let one = ok(Partner::Tribe, "event-attendance", &body("m_1"));
        let two = ok(Partner::Tribe, "event-attendance", &body("m_2"));
        assert_eq!(one.partner_event_id, "event-attendance:tev_9:m_1");
        assert_ne!(one.partner_event_id, two.partner_event_id);
    }

    #[test]
    fn key_parts_are_percent_encoded() {
        let event = ok(Partner::Tribe, "event-attendance", r#"{"id":"a:b","attendee_id":"c d","type":"x","attended":false}"#);
        assert_eq!(event.partner_event_id, "event-attendance:a%3Ab:c%20d");
    }

    #[test]
    fn missing_negative_and_malformed_values_are_refused() {
        assert_eq!(
            err(Partner::Aurora, "booking-created", r#"{"id":"b","total_price":1,"nights":1}"#),
            PayloadError::MissingField("guest_id".into())
        );
        assert_eq!(
            err(Partner::Aurora, "booking-created", r#"{"id":"b","guest_id":"g","total_price":-5,"nights":1}"#).field(),
            Some("total_price")
        );
        assert_eq!(
            err(Partner::Aurora, "booking-created", r#"{"id":"b","guest_id":"g","total_price":5,"nights":0}"#).field(),
            Some("nights")
        );
        assert_eq!(err(Partner::Aurora, "review-submitted", r#"{"id":"r","booking_id":"b","guest_id":"g","rating":6}"#).field(), Some("rating"));
        assert_eq!(err(Partner::Tribe, "staking-started", r#"{"id":"s","user_id":"u","amount":"0"}"#).field(), Some("amount"));
        assert_eq!(err(Partner::Tribe, "referral-success", r#"{"id":"r","referrer_id":"u","tier":"platinum"}"#).field(), Some("tier"));
        assert!(matches!(err(Partner::Aurora, "booking-completed", "{not json"), PayloadError::MalformedJson(_)));
        assert_eq!(err(Partner::Aurora, "booking-completed", "[1]"), PayloadError::NotAnObject);
    }

    #[test]
    fn every_known_event_has_a_valid_example() {
        let examples = [
            (Partner::Aurora, "booking-completed", r#"{"id":"b"}"#),
            (Partner::Aurora, "review-submitted", r#"{"id":"r","bookingId":"b","guestId":"g","rating":5}"#),
            (Partner::Tribe, "contribution", r#"{"id":"c","userId":"u","qualityScore":1.5}"#),
            (Partner::Tribe, "staking-started", r#"{"id":"s","user_id":"u","amount":"1000.000000000000000001"}"#),
            (Partner::Tribe, "coaching-milestone", r#"{"id":"m","user_id":"u","milestone":3}"#),
            (Partner::Tribe, "referral-success", r#"{"id":"r","referrer_id":"u","tier":"Gold"}"#),
            (Partner::HiEvents, "event-status-changed", r#"{"event_id":42,"status":"LIVE","updated_at":"2026-11-01T10:00:00Z"}"#),
        ];
        for (partner, event, body) in examples {
            assert!(is_known_event(partner, event));
            assert_eq!(ok(partner, event, body).disposition, Disposition::Pending, "{partner}/{event}");
        }
        assert!(!is_known_event(Partner::Aurora, "booking-exploded"));
    }

    #[test]
    fn hi_events_key_is_event_status_and_update_time() {
        let event = ok(Partner::HiEvents, "event-status-changed", r#"{"eventId":42,"status":"LIVE","updatedAt":"2026-11-01 10:00:00"}"#);
        assert_eq!(event.partner_event_id, "event-status-changed:42:LIVE:2026-11-01%2010%3A00%3A00");
    }

    #[test]
    fn stripe_events_are_pending_ignored_or_invalid() {
        let stripe = |body: &str| parse(Partner::Stripe, None, body.as_bytes(), now()).unwrap();
        let paid = stripe(r#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"amount_received":500,"currency":"cad","metadata":{"haven_user_id":"aurora:g1"}}}}"#);
        assert_eq!((paid.partner_event_id.as_str(), paid.disposition), ("evt_1", Disposition::Pending));
        let no_user = stripe(r#"{"id":"evt_2","type":"payment_intent.succeeded","data":{"object":{"amount_received":500,"metadata":{}}}}"#);
        assert!(matches!(no_user.disposition, Disposition::Invalid(_)));
        let customer = stripe(r#"{"id":"evt_3","type":"customer.created","data":{"object":{}}}"#);
        assert!(matches!(customer.disposition, Disposition::Ignored(_)));
        let payout = stripe(r#"{"id":"evt_4","type":"payout.failed","data":{"object":{"metadata":{"redemption_id":"0190a5c2-7d2e-7c4a-9b1e-2f3a4b5c6d7e"}}}}"#);
        assert_eq!(payout.disposition, Disposition::Pending);
        let foreign = stripe(r#"{"id":"evt_5","type":"payout.paid","data":{"object":{"metadata":{"redemption_id":"po_other_system"}}}}"#);
        assert!(matches!(foreign.disposition, Disposition::Invalid(_)));
        assert_eq!(parse(Partner::Stripe, None, br#"{"type":"payout.paid"}"#, now()).unwrap_err(), PayloadError::MissingField("id".into()));
    }

    #[test]
    fn identifiers_the_inbox_cannot_store_are_refused() {
        let long = "x".repeat(600);
        let body = format!(r#"{{"id":"{long}"}}"#);
        assert_eq!(err(Partner::Aurora, "booking-completed", &body).field(), Some("id"));
        let stripe = |body: &str| parse(Partner::Stripe, None, body.as_bytes(), now()).unwrap_err();
        assert_eq!(stripe(&format!(r#"{{"id":"evt_1","type":"{}"}}"#, "t".repeat(200))).field(), Some("type"));
        assert_eq!(stripe(r#"{"id":"evt_\u0000","type":"customer.created"}"#).field(), Some("id"));
    }

    #[test]
    fn a_payload_naming_another_event_than_the_url_is_refused() {
        let mismatch = |event: &str, body: &str| matches!(err(Partner::Aurora, event, body), PayloadError::EventMismatch { .. });
        let created = r#"{"id":"bk_1","guest_id":"g","total_price":10,"nights":1}"#;
        for naming in [r#""event":"booking-cancelled""#, r#""type":"booking.cancelled""#, r#""event":"BOOKING_CANCELLED""#] {
            let body = format!(r#"{{{naming},"id":"bk_1"}}"#);
            assert!(mismatch("booking-completed", &body), "{body}");
        }
        let body = created.replace('{', r#"{"event":"booking-cancelled","#);
        assert_eq!(err(Partner::Aurora, "booking-created", &body).field(), Some("event"));
        // Naming the URL's own event, in any spelling, is fine.
        let same = created.replace('{', r#"{"event":"booking.created","type":"booking-created","#);
        assert_eq!(ok(Partner::Aurora, "booking-created", &same).partner_event_id, "booking-created:bk_1");
        // Tribe's attendance `type` is not an event name.
        ok(Partner::Tribe, "event-attendance", r#"{"id":"t","attendee_id":"m","type":"workshop","attended":true}"#);
        let replayed = r#"{"id":"t","attendee_id":"m","type":"contribution","attended":true}"#;
        assert!(matches!(err(Partner::Tribe, "event-attendance", replayed), PayloadError::EventMismatch { .. }));
    }

    #[test]
    fn magnitudes_whose_reward_could_overflow_are_refused() {
        let booking = |price: &str, nights: &str| format!(r#"{{"id":"b","guest_id":"g","total_price":{price},"nights":{nights}}}"#);
        assert_eq!(err(Partner::Aurora, "booking-created", &booking("50000000000000000000000000000", "2")).field(), Some("total_price"));
        assert_eq!(err(Partner::Aurora, "booking-created", &booking("1000000000.01", "2")).field(), Some("total_price"));
        assert_eq!(err(Partner::Aurora, "booking-created", &booking("10", "3651")).field(), Some("nights"));
        ok(Partner::Aurora, "booking-created", &booking("1000000000", "3650"));
        assert_eq!(err(Partner::Tribe, "staking-started", r#"{"id":"s","user_id":"u","amount":"1000000000001"}"#).field(), Some("amount"));
        ok(Partner::Tribe, "staking-started", r#"{"id":"s","user_id":"u","amount":"1000000000000"}"#);
        assert_eq!(err(Partner::Tribe, "contribution", r#"{"id":"c","user_id":"u","quality_score":1e27}"#).field(), Some("quality_score"));
    }

    #[test]
    fn decimals_are_read_exactly() {
        let event = |price: &str| format!(r#"{{"id":"b","guest_id":"g","total_price":{price},"nights":1}}"#);
        ok(Partner::Aurora, "booking-created", &event("0.1000000000000000000001"));
        ok(Partner::Aurora, "booking-created", &event(r#""1e-18""#));
        let read = read(Partner::Aurora, "booking-created", event("0.1000000000000000000001").as_bytes(), now()).unwrap();
        assert!(matches!(read, EventData::BookingCreated { total_price, .. } if total_price.to_string() == "0.1000000000000000000001"));
    }

    #[test]
    fn identifiers_with_control_characters_and_timestamps_out_of_window_are_refused() {
        assert_eq!(err(Partner::Aurora, "booking-completed", r#"{"id":"bk\u0000"}"#).field(), Some("id"));
        assert_eq!(err(Partner::Aurora, "booking-created", r#"{"id":"b","guest_id":"g\n1","total_price":1,"nights":1}"#).field(), Some("guest_id"));
        let status = |at: &str| format!(r#"{{"event_id":1,"status":"LIVE","updated_at":"{at}"}}"#);
        assert_eq!(err(Partner::HiEvents, "event-status-changed", &status("9999-12-31T00:00:00Z")).field(), Some("updated_at"));
        assert_eq!(err(Partner::HiEvents, "event-status-changed", &status("2019-06-01T00:00:00Z")).field(), Some("updated_at"));
        ok(Partner::HiEvents, "event-status-changed", &status("2026-12-02T12:00:59Z"));
        let stake = |at: &str| format!(r#"{{"id":"s","user_id":"u","amount":"10","started_at":"{at}"}}"#);
        assert_eq!(err(Partner::Tribe, "staking-started", &stake("2100-01-01T00:00:00Z")).field(), Some("started_at"));
    }

    #[test]
    fn identifiers_too_long_for_their_columns_are_refused() {
        let guest = |len: usize| format!(r#"{{"id":"b","guest_id":"{}","total_price":1,"nights":1}}"#, "g".repeat(len));
        ok(Partner::Aurora, "booking-created", &guest(249));
        assert_eq!(err(Partner::Aurora, "booking-created", &guest(250)).field(), Some("guest_id"));
        let kind = |len: usize| format!(r#"{{"id":"t","attendee_id":"m","type":"{}","attended":true}}"#, "w".repeat(len));
        ok(Partner::Tribe, "event-attendance", &kind(128));
        assert_eq!(err(Partner::Tribe, "event-attendance", &kind(129)).field(), Some("type"));
        // A key part is bounded once percent-encoded: 100 × "é" is 600 characters so.
        let booking = format!(r#"{{"id":"{}"}}"#, "é".repeat(100));
        assert_eq!(err(Partner::Aurora, "booking-cancelled", &booking).field(), Some("id"));
    }
}
