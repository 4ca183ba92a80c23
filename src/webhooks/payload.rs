//! Payload validation for every partner event of SPEC section 2, and the
//! "partner event id" each one is deduplicated by.
//!
//! Fields are accepted in snake_case and camelCase. Key parts are
//! percent-encoded and joined by `:` so no two events share an id by accident
//! (`event-attendance:tev_9:m_1`).

use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::Partner;

/// Bytes left as they are in a key part; everything else (`:` above all) is encoded.
const KEY_PART: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Events each partner may send in the URL path (Stripe names them in the body).
pub const EVENTS: &[(Partner, &[&str])] = &[
    (
        Partner::Aurora,
        &["booking-created", "booking-completed", "booking-cancelled", "review-submitted"],
    ),
    (
        Partner::Tribe,
        &["event-attendance", "contribution", "staking-started", "coaching-milestone", "referral-success"],
    ),
    (Partner::HiEvents, &["event-status-changed"]),
];

/// Stripe event types havend acts on; any other is stored as `ignored`.
pub const STRIPE_HANDLED: &[&str] = &["payment_intent.succeeded", "payout.paid", "payout.failed"];

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
    EVENTS.iter().any(|(p, events)| *p == partner && events.contains(&event))
}

/// Validates `body` as `partner`'s `event` (None for Stripe, which names the
/// type in the body) and derives its partner event id.
pub fn parse(partner: Partner, event: Option<&str>, body: &[u8]) -> Result<ParsedEvent, PayloadError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| PayloadError::MalformedJson(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(PayloadError::NotAnObject);
    };
    let fields = Fields(&object);
    let parsed = match (partner, event) {
        (Partner::Stripe, _) => parse_stripe(&fields)?,
        (_, Some(event)) => {
            check_named_event(partner, event, &fields)?;
            let key = key_parts(partner, event, &fields)?;
            ParsedEvent {
                event_type: event.to_owned(),
                partner_event_id: partner_event_id(event, &key),
                disposition: Disposition::Pending,
            }
        }
        (_, None) => return Err(PayloadError::MissingField("event".into())),
    };
    check_storable(&parsed)?;
    Ok(parsed)
}

/// Payload fields in which partners name the event they send.
const EVENT_NAME_FIELDS: [&str; 2] = ["event", "type"];

/// Refuses a payload whose `event` or `type` names another of the partner's
/// events than the URL. Only values that name one of the partner's events
/// count, compared case-insensitively with `_` and `.` read as `-`
/// (`booking.cancelled`, `BOOKING_CANCELLED`): Tribe's `event-attendance`
/// carries an unrelated `type` (`workshop`, …) that must not be refused.
fn check_named_event(partner: Partner, url_event: &str, fields: &Fields) -> Result<(), PayloadError> {
    let known = EVENTS.iter().find(|(p, _)| *p == partner).map(|(_, events)| *events).unwrap_or_default();
    for field in EVENT_NAME_FIELDS {
        let Some(Value::String(value)) = fields.0.get(field) else { continue };
        let named: String =
            value.trim().chars().map(|c| if matches!(c, '_' | '.') { '-' } else { c.to_ascii_lowercase() }).collect();
        if named != url_event && known.contains(&named.as_str()) {
            return Err(PayloadError::EventMismatch { field: field.into(), named: value.clone(), url: url_event.into() });
        }
    }
    Ok(())
}

/// Longest partner event id the inbox stores (its column's size).
pub const MAX_PARTNER_EVENT_ID_LEN: usize = 512;
/// Longest event type the inbox stores (its column's size).
pub const MAX_EVENT_TYPE_LEN: usize = 128;

/// Largest booking total (CAD) accepted: a reward computed from a larger one
/// could overflow, so it is refused at intake rather than failing later.
pub const MAX_BOOKING_PRICE: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Most nights one booking may span (ten years).
pub const MAX_NIGHTS: i64 = 3_650;
/// Largest stake (HNV) accepted.
pub const MAX_STAKE: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);
/// Largest quality score magnitude accepted (rewards clamp it far lower).
pub const MAX_QUALITY_SCORE: Decimal = Decimal::from_parts(1_000, 0, 0, false, 0);

/// Refuses (400) what the inbox cannot store, rather than failing the insert
/// (503) and inviting the partner to retry the same event forever.
fn check_storable(event: &ParsedEvent) -> Result<(), PayloadError> {
    if event.partner_event_id.len() > MAX_PARTNER_EVENT_ID_LEN {
        return Err(invalid("id", &format!("identifiers are too long (over {MAX_PARTNER_EVENT_ID_LEN} bytes encoded)")));
    }
    if event.event_type.len() > MAX_EVENT_TYPE_LEN {
        return Err(invalid("type", &format!("longer than {MAX_EVENT_TYPE_LEN} bytes")));
    }
    // PostgreSQL text cannot hold NUL; only Stripe's id and type reach storage unencoded.
    if event.partner_event_id.contains('\0') || event.event_type.contains('\0') {
        return Err(invalid("id", "must not contain NUL characters"));
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

/// Validates the event's fields and returns its key parts.
fn key_parts(partner: Partner, event: &str, f: &Fields) -> Result<Vec<String>, PayloadError> {
    match (partner, event) {
        (Partner::Aurora, "booking-created") => {
            let id = f.primary_id(&["booking_id"])?;
            f.id("guest_id")?;
            f.decimal_at_most("total_price", MAX_BOOKING_PRICE)?;
            f.integer_in("nights", 1, MAX_NIGHTS)?;
            Ok(vec![id])
        }
        (Partner::Aurora, "booking-completed" | "booking-cancelled") => Ok(vec![f.primary_id(&["booking_id"])?]),
        (Partner::Aurora, "review-submitted") => {
            let id = f.primary_id(&["booking_id"])?;
            f.id("booking_id")?;
            f.id("guest_id")?;
            f.integer_in("rating", 1, 5)?;
            Ok(vec![id])
        }
        (Partner::Tribe, "event-attendance") => {
            let id = f.primary_id(&["event_id"])?;
            let attendee = f.id("attendee_id")?;
            f.text("type")?;
            f.boolean("attended")?;
            Ok(vec![id, attendee])
        }
        (Partner::Tribe, "contribution") => {
            let id = f.primary_id(&["event_id"])?;
            f.id("user_id")?;
            let score = f.decimal("quality_score")?;
            if score.abs() > MAX_QUALITY_SCORE {
                return Err(invalid("quality_score", &format!("must be from -{MAX_QUALITY_SCORE} to {MAX_QUALITY_SCORE}")));
            }
            Ok(vec![id])
        }
        (Partner::Tribe, "staking-started") => {
            let id = f.primary_id(&["event_id"])?;
            f.id("user_id")?;
            f.decimal_at_most("amount", MAX_STAKE)?;
            Ok(vec![id])
        }
        (Partner::Tribe, "coaching-milestone") => {
            let id = f.primary_id(&["event_id"])?;
            f.id("user_id")?;
            f.id("milestone")?;
            Ok(vec![id])
        }
        (Partner::Tribe, "referral-success") => {
            let id = f.primary_id(&["event_id"])?;
            f.id("referrer_id")?;
            let tier = f.text("tier")?;
            if !["basic", "silver", "gold"].contains(&tier.to_ascii_lowercase().as_str()) {
                return Err(invalid("tier", "must be basic, silver or gold"));
            }
            Ok(vec![id])
        }
        (Partner::HiEvents, "event-status-changed") => {
            let event_id = f.primary_id(&["event_id"])?;
            let status = f.text("status")?;
            let updated_at = f.timestamp("updated_at")?;
            Ok(vec![event_id, status, updated_at])
        }
        _ => Err(PayloadError::MissingField("a known event".into())),
    }
}

fn parse_stripe(f: &Fields) -> Result<ParsedEvent, PayloadError> {
    let id = f.text("id")?;
    let event_type = f.text("type")?;
    let object = f.0.get("data").and_then(|d| d.get("object"));
    let metadata = |key: &str| {
        object
            .and_then(|o| o.get("metadata"))
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    };
    let disposition = match event_type.as_str() {
        "payment_intent.succeeded" => {
            let amount = object
                .and_then(|o| o.get("amount_received").or_else(|| o.get("amount")))
                .and_then(Value::as_i64);
            if metadata("haven_user_id").is_none() {
                Disposition::Invalid("missing metadata.haven_user_id".into())
            } else if amount.is_none_or(|a| a <= 0) {
                Disposition::Invalid("missing or non-positive amount_received".into())
            } else {
                Disposition::Pending
            }
        }
        "payout.paid" | "payout.failed" => match metadata("redemption_id") {
            Some(_) => Disposition::Pending,
            None => Disposition::Invalid("missing metadata.redemption_id".into()),
        },
        other => Disposition::Ignored(format!("unhandled event type {other}")),
    };
    Ok(ParsedEvent { event_type, partner_event_id: id, disposition })
}

fn invalid(field: &str, problem: &str) -> PayloadError {
    PayloadError::InvalidField { field: field.into(), problem: problem.into() }
}

/// A JSON object read by snake_case field names, accepting camelCase too.
/// The rewards processor reads stored bodies through it, so both sides agree.
pub(crate) struct Fields<'a>(pub(crate) &'a Map<String, Value>);

impl Fields<'_> {
    pub(crate) fn get(&self, field: &str) -> Option<&Value> {
        self.0
            .get(field)
            .or_else(|| self.0.get(&camel_case(field)))
            .filter(|v| !v.is_null())
    }

    pub(crate) fn require(&self, field: &str) -> Result<&Value, PayloadError> {
        self.get(field).ok_or_else(|| PayloadError::MissingField(field.into()))
    }

    /// `id`, or where it is absent the named stand-ins (`booking_id`, `event_id`).
    pub(crate) fn primary_id(&self, stand_ins: &[&str]) -> Result<String, PayloadError> {
        match std::iter::once("id").chain(stand_ins.iter().copied()).find(|f| self.get(f).is_some()) {
            Some(field) => self.id(field),
            None => Err(PayloadError::MissingField("id".into())),
        }
    }

    /// An identifier: a non-empty string or an integer.
    pub(crate) fn id(&self, field: &str) -> Result<String, PayloadError> {
        match self.require(field)? {
            Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
            _ => Err(invalid(field, "must be a non-empty string or an integer")),
        }
    }

    pub(crate) fn text(&self, field: &str) -> Result<String, PayloadError> {
        match self.require(field)? {
            Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
            _ => Err(invalid(field, "must be a non-empty string")),
        }
    }

    pub(crate) fn boolean(&self, field: &str) -> Result<bool, PayloadError> {
        self.require(field)?.as_bool().ok_or_else(|| invalid(field, "must be true or false"))
    }

    pub(crate) fn integer_in(&self, field: &str, min: i64, max: i64) -> Result<i64, PayloadError> {
        let value = self.require(field)?;
        let number = value.as_i64().or_else(|| value.as_str().and_then(|s| s.parse().ok()));
        match number {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ if max == i64::MAX => Err(invalid(field, &format!("must be an integer >= {min}"))),
            _ => Err(invalid(field, &format!("must be an integer from {min} to {max}"))),
        }
    }

    /// An exact decimal, from a JSON number (read from its text, never via a
    /// float) or a decimal string.
    pub(crate) fn decimal(&self, field: &str) -> Result<Decimal, PayloadError> {
        let text = match self.require(field)? {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.trim().to_owned(),
            _ => return Err(invalid(field, "must be a decimal number")),
        };
        Decimal::from_str(&text)
            .or_else(|_| Decimal::from_scientific(&text))
            .map_err(|_| invalid(field, "must be a decimal number"))
    }

    pub(crate) fn positive_decimal(&self, field: &str) -> Result<Decimal, PayloadError> {
        let value = self.decimal(field)?;
        if value > Decimal::ZERO { Ok(value) } else { Err(invalid(field, "must be greater than 0")) }
    }

    /// A decimal greater than 0 and at most `max`.
    pub(crate) fn decimal_at_most(&self, field: &str, max: Decimal) -> Result<Decimal, PayloadError> {
        let value = self.positive_decimal(field)?;
        if value <= max { Ok(value) } else { Err(invalid(field, &format!("must be at most {max}"))) }
    }

    /// A timestamp: RFC 3339, `YYYY-MM-DD HH:MM:SS` (taken as UTC), or unix seconds.
    /// Returned as sent, since it is part of the key.
    pub(crate) fn timestamp(&self, field: &str) -> Result<String, PayloadError> {
        let problem = "must be an RFC 3339 timestamp, YYYY-MM-DD HH:MM:SS or unix seconds";
        match self.require(field)? {
            Value::String(s)
                if chrono::DateTime::parse_from_rfc3339(s).is_ok()
                    || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").is_ok() =>
            {
                Ok(s.clone())
            }
            Value::Number(n) if n.is_i64() => Ok(n.to_string()),
            _ => Err(invalid(field, problem)),
        }
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

    fn ok(partner: Partner, event: &str, body: &str) -> ParsedEvent {
        parse(partner, Some(event), body.as_bytes()).unwrap()
    }

    fn err(partner: Partner, event: &str, body: &str) -> PayloadError {
        parse(partner, Some(event), body.as_bytes()).unwrap_err()
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
        let stripe = |body: &str| parse(Partner::Stripe, None, body.as_bytes()).unwrap();
        let paid = stripe(r#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"amount_received":500,"metadata":{"haven_user_id":"aurora:g1"}}}}"#);
        assert_eq!((paid.partner_event_id.as_str(), paid.disposition), ("evt_1", Disposition::Pending));
        let no_user = stripe(r#"{"id":"evt_2","type":"payment_intent.succeeded","data":{"object":{"amount_received":500,"metadata":{}}}}"#);
        assert!(matches!(no_user.disposition, Disposition::Invalid(_)));
        let customer = stripe(r#"{"id":"evt_3","type":"customer.created","data":{"object":{}}}"#);
        assert!(matches!(customer.disposition, Disposition::Ignored(_)));
        let payout = stripe(r#"{"id":"evt_4","type":"payout.failed","data":{"object":{"metadata":{"redemption_id":"rd_1"}}}}"#);
        assert_eq!(payout.disposition, Disposition::Pending);
        assert_eq!(parse(Partner::Stripe, None, br#"{"type":"payout.paid"}"#).unwrap_err(), PayloadError::MissingField("id".into()));
    }

    #[test]
    fn identifiers_the_inbox_cannot_store_are_refused() {
        let long = "x".repeat(600);
        let body = format!(r#"{{"id":"{long}"}}"#);
        assert_eq!(err(Partner::Aurora, "booking-completed", &body).field(), Some("id"));
        let stripe = |body: &str| parse(Partner::Stripe, None, body.as_bytes()).unwrap_err();
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
        let f = serde_json::from_str::<Map<String, Value>>(r#"{"a":0.1000000000000000000001,"b":"1e-18"}"#).unwrap();
        let fields = Fields(&f);
        assert_eq!(fields.decimal("a").unwrap().to_string(), "0.1000000000000000000001");
        assert!(fields.decimal("b").unwrap() > Decimal::ZERO);
    }
}
