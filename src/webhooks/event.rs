//! The one schema of every partner event (SPEC section 2): which fields it
//! needs, which of them make its key, and the bound of each. Intake, the
//! partner sync and the rewards processor all read a body through
//! [`decode`], so a body that was accepted reads back the same, and a stored
//! event can never fail a processor for a reason its payload already showed.
//!
//! A bound is the narrowest column that keeps any value built from the
//! field, minus the longest prefix added to it. The partner event id becomes
//! `transactions.source` as `"{partner}:{partner_event_id}"`, and a
//! reversal's source adds `reversal:`, so every key is bounded by
//! [`MAX_PARTNER_EVENT_ID_LEN`]; a key field's bound applies to its
//! percent-encoded form, which is what the key holds.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::Partner;
use super::payload::{Fields, PayloadError, invalid};

/// `transactions.source`, the narrowest column a partner event id reaches.
const SOURCE_COLUMN_LEN: usize = 256;
/// The longest prefix a source puts before a partner event id.
const LONGEST_SOURCE_PREFIX: &str = "reversal:hi-events:";
/// Longest partner event id (percent-encoded, as stored): its reversal's
/// source must still fit `transactions.source`.
pub const MAX_PARTNER_EVENT_ID_LEN: usize = SOURCE_COLUMN_LEN - LONGEST_SOURCE_PREFIX.len();
/// Longest partner user id: `users.external_ref` (256) minus `aurora:` or `stripe:`.
pub const MAX_USER_ID_LEN: usize = 256 - "stripe:".len();
/// Longest event type the inbox stores (`webhook_events.event_type`).
pub const MAX_EVENT_TYPE_LEN: usize = 128;

/// Largest booking total (CAD) accepted: a reward computed from a larger one
/// could overflow, so it is refused at intake rather than failing later.
pub const MAX_BOOKING_PRICE: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Most nights one booking may span (ten years).
pub const MAX_NIGHTS: i64 = 3_650;
/// Largest stake (HNV) accepted: 10^12.
pub const MAX_STAKE: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);
/// Largest quality score accepted (rewards clamp it far lower).
pub const MAX_QUALITY_SCORE: Decimal = Decimal::from_parts(1_000, 0, 0, false, 0);
/// Lowest quality score accepted.
pub const MIN_QUALITY_SCORE: Decimal = Decimal::from_parts(1_000, 0, 0, true, 0);
/// The earliest partner timestamp accepted (2020-01-01T00:00:00Z, unix seconds).
pub const EARLIEST_TIMESTAMP: i64 = 1_577_836_800;
/// How far past the receiver's clock a partner timestamp may lie (clock skew).
pub const TIMESTAMP_FUTURE_SECS: i64 = 60;
/// Longest timestamp accepted, percent-encoded (a key holds it so): RFC 3339
/// with nanoseconds and an offset takes 45.
pub const MAX_TIME_KEY_LEN: usize = 48;

/// What a field holds, and its bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A non-empty string or an integer, without control characters, at most
    /// `max` characters (of its percent-encoded form when `encoded`).
    Id {
        /// The bound.
        max: usize,
        /// Whether the bound applies to the percent-encoded form.
        encoded: bool,
    },
    /// A non-empty string without control characters, at most `max` characters.
    Text {
        /// The bound.
        max: usize,
    },
    /// One of these words, compared case-insensitively.
    OneOf(&'static [&'static str]),
    /// An exact decimal in `[min, max]`; greater than zero when `positive`.
    Decimal {
        /// Lowest value accepted (ignored when `positive`).
        min: Decimal,
        /// Highest value accepted.
        max: Decimal,
        /// Zero and below are refused.
        positive: bool,
    },
    /// An integer in `[min, max]` (a JSON number or a string of digits).
    Integer {
        /// Lowest value accepted.
        min: i64,
        /// Highest value accepted.
        max: i64,
    },
    /// `true` or `false`.
    Flag,
    /// RFC 3339 (any offset), `YYYY-MM-DD HH:MM:SS` (UTC) or unix seconds,
    /// within [2020-01-01, now + 60 s].
    Time,
}

/// One field of a partner event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    /// Its name in snake_case (camelCase is accepted too).
    pub name: &'static str,
    /// Fields read when this one is absent (`booking_id` for `id`).
    pub stand_ins: &'static [&'static str],
    /// What it holds and its bound.
    pub kind: Kind,
    /// Whether the event is valid without it.
    pub optional: bool,
    /// Whether it is a part of the event's key (in the order of `fields`).
    pub key: bool,
    /// Where havend keeps it (or what is built from it): why the bound is what it is.
    pub stored_in: &'static str,
}

impl Field {
    const fn new(name: &'static str, kind: Kind, stored_in: &'static str) -> Field {
        Field { name, stand_ins: &[], kind, optional: false, key: false, stored_in }
    }

    const fn key(self) -> Field {
        Field { key: true, ..self }
    }

    const fn or(self, stand_ins: &'static [&'static str]) -> Field {
        Field { stand_ins, ..self }
    }

    const fn optional(self) -> Field {
        Field { optional: true, ..self }
    }
}

/// The key bound left for a field after `"{event}:"`.
const fn key_room(event: &str) -> usize {
    MAX_PARTNER_EVENT_ID_LEN - event.len() - 1
}

const fn id(max: usize) -> Kind {
    Kind::Id { max, encoded: false }
}

const fn encoded_id(max: usize) -> Kind {
    Kind::Id { max, encoded: true }
}

// Aurora. A booking's id is the key of three events, so it is bounded by the
// longest of them, `booking-completed:` / `booking-cancelled:`, wherever it appears.
const BOOKING_ID_LEN: usize = key_room("booking-cancelled");
const BOOKING: Field = Field::new("id", encoded_id(BOOKING_ID_LEN), "aurora_bookings.booking_id, transactions.source").key().or(&["booking_id"]);
const GUEST: Field = Field::new("guest_id", id(MAX_USER_ID_LEN), "users.external_ref as aurora:{guest_id}");
const TOTAL_PRICE: Field =
    Field::new("total_price", Kind::Decimal { min: Decimal::ZERO, max: MAX_BOOKING_PRICE, positive: true }, "the reward (2 HNV per CAD × 1.2)");
const NIGHTS: Field = Field::new("nights", Kind::Integer { min: 1, max: MAX_NIGHTS }, "aurora_bookings.nights");
const REVIEW: Field = Field::new("id", encoded_id(key_room("review-submitted")), "transactions.source").key().or(&["booking_id"]);
const REVIEWED_BOOKING: Field = Field::new("booking_id", encoded_id(BOOKING_ID_LEN), "transactions.source as review-bonus:{booking_id}");
const RATING: Field = Field::new("rating", Kind::Integer { min: 1, max: 5 }, "the review bonus rule");

// Tribe.
// An attendance's key has two parts (`{id}:{attendee_id}`) that share its room.
const ATTENDANCE_ROOM: usize = key_room("event-attendance") - 1;
const TRIBE_EVENT: Field =
    Field::new("id", encoded_id(ATTENDANCE_ROOM / 2), "tribe_events.tribe_event_id, transactions.source").key().or(&["event_id"]);
const ATTENDEE: Field = Field::new("attendee_id", encoded_id(ATTENDANCE_ROOM - ATTENDANCE_ROOM / 2), "users.external_ref as tribe:{attendee_id}, transactions.source").key();
const ATTENDANCE_TYPE: Field = Field::new("type", Kind::Text { max: 128 }, "tribe_events.event_type");
const ATTENDED: Field = Field::new("attended", Kind::Flag, "tribe_events.attended");
const CONTRIBUTION: Field = Field::new("id", encoded_id(key_room("contribution")), "tribe_rewards.tribe_id, transactions.source").key().or(&["event_id"]);
const USER: Field = Field::new("user_id", id(MAX_USER_ID_LEN), "users.external_ref as tribe:{user_id}");
const QUALITY: Field =
    Field::new("quality_score", Kind::Decimal { min: MIN_QUALITY_SCORE, max: MAX_QUALITY_SCORE, positive: false }, "tribe_rewards.detail");
const STAKE: Field =
    Field::new("id", encoded_id(key_room("staking-started")), "staking_records.stake_id, transactions.source as staking:{id}:{monday}").key().or(&["event_id"]);
const STAKE_AMOUNT: Field =
    Field::new("amount", Kind::Decimal { min: Decimal::ZERO, max: MAX_STAKE, positive: true }, "staking_records.amount and its weekly yield");
const STARTED_AT: Field = Field::new("started_at", Kind::Time, "staking_records.started_at").optional();
const MILESTONE_ID: Field = Field::new("id", encoded_id(key_room("coaching-milestone")), "tribe_rewards.tribe_id, transactions.source").key().or(&["event_id"]);
const MILESTONE: Field = Field::new("milestone", id(128), "tribe_rewards.detail");
const REFERRAL: Field = Field::new("id", encoded_id(key_room("referral-success")), "tribe_rewards.tribe_id, transactions.source").key().or(&["event_id"]);
const REFERRER: Field = Field::new("referrer_id", id(MAX_USER_ID_LEN), "users.external_ref as tribe:{referrer_id}");
const TIER: Field = Field::new("tier", Kind::OneOf(&["basic", "silver", "gold"]), "tribe_rewards.detail");

// Hi.Events: three key parts (`{event_id}:{status}:{updated_at}`) share one
// key's room; an update time takes at most [`MAX_TIME_KEY_LEN`] of it.
const TICKETING_ROOM: usize = key_room("event-status-changed") - 2 - MAX_TIME_KEY_LEN;
const STATUS_LEN: usize = 38;
const TICKETED_EVENT: Field = Field::new("event_id", encoded_id(TICKETING_ROOM - STATUS_LEN), "ticketing_status.event_id, transactions.source").key();
const STATUS: Field = Field::new("status", encoded_id(STATUS_LEN), "ticketing_status.partner_status, transactions.source").key();
const UPDATED_AT: Field = Field::new("updated_at", Kind::Time, "ticketing_status.updated_at").key();

/// One partner event: its name and its fields.
#[derive(Debug, Clone, Copy)]
pub struct EventSpec {
    /// Who sends it.
    pub partner: Partner,
    /// The event as named in the URL.
    pub name: &'static str,
    /// Its fields; the key is made of those marked `key`, in this order.
    pub fields: &'static [Field],
}

/// Every event a partner may name in the URL (Stripe names its events in the
/// body; see [`STRIPE_HANDLED`]).
pub const EVENTS: &[EventSpec] = &[
    EventSpec { partner: Partner::Aurora, name: "booking-created", fields: &[BOOKING, GUEST, TOTAL_PRICE, NIGHTS] },
    EventSpec { partner: Partner::Aurora, name: "booking-completed", fields: &[BOOKING] },
    EventSpec { partner: Partner::Aurora, name: "booking-cancelled", fields: &[BOOKING] },
    EventSpec { partner: Partner::Aurora, name: "review-submitted", fields: &[REVIEW, REVIEWED_BOOKING, GUEST, RATING] },
    EventSpec { partner: Partner::Tribe, name: "event-attendance", fields: &[TRIBE_EVENT, ATTENDEE, ATTENDANCE_TYPE, ATTENDED] },
    EventSpec { partner: Partner::Tribe, name: "contribution", fields: &[CONTRIBUTION, USER, QUALITY] },
    EventSpec { partner: Partner::Tribe, name: "staking-started", fields: &[STAKE, USER, STAKE_AMOUNT, STARTED_AT] },
    EventSpec { partner: Partner::Tribe, name: "coaching-milestone", fields: &[MILESTONE_ID, USER, MILESTONE] },
    EventSpec { partner: Partner::Tribe, name: "referral-success", fields: &[REFERRAL, REFERRER, TIER] },
    EventSpec { partner: Partner::HiEvents, name: "event-status-changed", fields: &[TICKETED_EVENT, STATUS, UPDATED_AT] },
];

/// Stripe event types havend acts on; any other is stored as `ignored`.
pub const STRIPE_HANDLED: &[&str] = &["payment_intent.succeeded", "payout.paid", "payout.failed"];

/// The spec of `partner`'s `event`, if havend knows it.
pub fn spec(partner: Partner, event: &str) -> Option<&'static EventSpec> {
    EVENTS.iter().find(|spec| spec.partner == partner && spec.name == event)
}

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

/// A URL-named event, decoded: what it says and its key parts (as sent).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// What the event says.
    pub data: EventData,
    /// The values of its key fields, in order, as sent.
    pub key: Vec<String>,
}

/// Reads `fields` as `spec`'s event, checking every bound; `now` is the
/// receiver's clock, for the timestamp window.
pub(crate) fn decode(spec: &EventSpec, fields: &Fields, now: DateTime<Utc>) -> Result<Decoded, PayloadError> {
    let mut r = Reader { fields, now, key: Vec::new() };
    let data = match (spec.partner, spec.name) {
        (Partner::Aurora, "booking-created") => EventData::BookingCreated {
            booking: r.id(&BOOKING)?,
            guest: r.id(&GUEST)?,
            total_price: r.decimal(&TOTAL_PRICE)?,
            nights: r.integer(&NIGHTS)?,
        },
        (Partner::Aurora, "booking-completed") => EventData::BookingCompleted { booking: r.id(&BOOKING)? },
        (Partner::Aurora, "booking-cancelled") => EventData::BookingCancelled { booking: r.id(&BOOKING)? },
        (Partner::Aurora, "review-submitted") => {
            r.id(&REVIEW)?;
            EventData::ReviewSubmitted { booking: r.id(&REVIEWED_BOOKING)?, guest: r.id(&GUEST)?, rating: r.integer(&RATING)? }
        }
        (Partner::Tribe, "event-attendance") => EventData::Attendance {
            event: r.id(&TRIBE_EVENT)?,
            attendee: r.id(&ATTENDEE)?,
            kind: r.id(&ATTENDANCE_TYPE)?,
            attended: r.flag(&ATTENDED)?,
        },
        (Partner::Tribe, "contribution") => EventData::Contribution { id: r.id(&CONTRIBUTION)?, user: r.id(&USER)?, quality: r.decimal(&QUALITY)? },
        (Partner::Tribe, "staking-started") => EventData::StakingStarted {
            id: r.id(&STAKE)?,
            user: r.id(&USER)?,
            amount: r.decimal(&STAKE_AMOUNT)?,
            started_at: r.optional_time(&STARTED_AT)?,
        },
        (Partner::Tribe, "coaching-milestone") => EventData::CoachingMilestone { id: r.id(&MILESTONE_ID)?, user: r.id(&USER)?, milestone: r.id(&MILESTONE)? },
        (Partner::Tribe, "referral-success") => EventData::Referral { id: r.id(&REFERRAL)?, referrer: r.id(&REFERRER)?, tier: r.id(&TIER)? },
        (Partner::HiEvents, "event-status-changed") => {
            let event = r.id(&TICKETED_EVENT)?;
            let status = r.id(&STATUS)?;
            let updated_at = r.optional_time(&UPDATED_AT)?.ok_or_else(|| PayloadError::MissingField(UPDATED_AT.name.into()))?;
            EventData::TicketingStatusChanged { event, status, updated_at }
        }
        _ => return Err(PayloadError::MissingField("a known event".into())),
    };
    Ok(Decoded { data, key: r.key })
}

/// Reads a Stripe event's `data.object` as a handled `event_type`. `Err` is
/// why havend cannot use it: the event is stored as `invalid` (SPEC section
/// 2: Stripe retries anything but a 2xx for days).
pub fn decode_stripe(event_type: &str, event: &Map<String, Value>) -> Result<EventData, String> {
    let object = event.get("data").and_then(|d| d.get("object"));
    let metadata = |key: &str| {
        object.and_then(|o| o.get("metadata")).and_then(|m| m.get(key)).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
    };
    match event_type {
        "payment_intent.succeeded" => {
            let user = metadata("haven_user_id").ok_or("missing metadata.haven_user_id")?;
            let user = stripe_user(user);
            // The reference is kept as `users.external_ref`, or names a user
            // by havend's id (then the UUID is its whole length).
            if user.chars().count() > MAX_USER_ID_LEN + "stripe:".len() || has_control(&user) {
                return Err(format!("metadata.haven_user_id is longer than {MAX_USER_ID_LEN} characters or holds control characters"));
            }
            let amount_minor = object
                .and_then(|o| o.get("amount_received").or_else(|| o.get("amount")))
                .and_then(Value::as_i64)
                .filter(|a| *a > 0)
                .ok_or("missing or non-positive amount_received")?;
            let currency = object.and_then(|o| o.get("currency")).and_then(Value::as_str).ok_or("missing currency")?;
            if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err("currency must be a three-letter ISO 4217 code".into());
            }
            Ok(EventData::StripePayment { user, amount_minor, currency: currency.to_owned() })
        }
        "payout.paid" | "payout.failed" => {
            let redemption = metadata("redemption_id").ok_or("missing metadata.redemption_id")?;
            // Redemptions are havend's own UUIDs; anything else names none of them.
            let redemption = uuid::Uuid::parse_str(redemption).map_err(|_| "metadata.redemption_id is not a havend redemption id")?;
            Ok(EventData::StripePayout { redemption: redemption.to_string(), paid: event_type == "payout.paid" })
        }
        other => Err(format!("unhandled event type {other}")),
    }
}

/// Stripe's `metadata.haven_user_id`: `{partner}:{id}` as is, havend's own
/// user id as is (resolved later), a bare id as `stripe:{id}`.
pub fn stripe_user(reference: &str) -> String {
    let reference = reference.trim();
    let partner_ref = reference.split_once(':').is_some_and(|(p, _)| p.parse::<Partner>().is_ok());
    if partner_ref || uuid::Uuid::parse_str(reference).is_ok() { reference.to_owned() } else { format!("stripe:{reference}") }
}

/// Whether `text` holds NUL or another control character (never valid in an identifier).
pub fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// Reads fields by their spec and collects the key parts on the way.
struct Reader<'a, 'b> {
    fields: &'a Fields<'b>,
    now: DateTime<Utc>,
    key: Vec<String>,
}

impl Reader<'_, '_> {
    /// The value of `field` or of its first present stand-in, and the name it was found under.
    fn value(&self, field: &Field) -> Option<(&Value, &'static str)> {
        std::iter::once(field.name).chain(field.stand_ins.iter().copied()).find_map(|name| self.fields.get(name).map(|v| (v, name)))
    }

    fn require(&self, field: &Field) -> Result<&Value, PayloadError> {
        self.value(field).map(|(v, _)| v).ok_or_else(|| PayloadError::MissingField(field.name.into()))
    }

    fn keep(&mut self, field: &Field, text: &str) {
        if field.key {
            self.key.push(text.to_owned());
        }
    }

    /// An identifier, a text or one of a set of words, per the field's kind.
    fn id(&mut self, field: &Field) -> Result<String, PayloadError> {
        let value = self.require(field)?;
        let text = match (field.kind, value) {
            (Kind::Id { .. }, Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            (_, Value::String(s)) if !s.trim().is_empty() => s.clone(),
            (Kind::Id { .. }, _) => return Err(invalid(field.name, "must be a non-empty string or an integer")),
            _ => return Err(invalid(field.name, "must be a non-empty string")),
        };
        if has_control(&text) {
            return Err(invalid(field.name, "must not contain NUL or control characters"));
        }
        match field.kind {
            Kind::Id { max, encoded } => {
                let len = if encoded { super::payload::encoded_len(&text) } else { text.chars().count() };
                if len > max {
                    let form = if encoded { " once percent-encoded" } else { "" };
                    return Err(invalid(field.name, &format!("must be at most {max} characters{form}")));
                }
            }
            Kind::Text { max } if text.chars().count() > max => return Err(invalid(field.name, &format!("must be at most {max} characters"))),
            Kind::OneOf(words) if !words.iter().any(|w| w.eq_ignore_ascii_case(text.trim())) => {
                return Err(invalid(field.name, &format!("must be one of {}", words.join(", "))));
            }
            _ => {}
        }
        self.keep(field, &text);
        Ok(text)
    }

    fn flag(&mut self, field: &Field) -> Result<bool, PayloadError> {
        self.require(field)?.as_bool().ok_or_else(|| invalid(field.name, "must be true or false"))
    }

    fn integer(&mut self, field: &Field) -> Result<i64, PayloadError> {
        let Kind::Integer { min, max } = field.kind else { unreachable!("{} is not an integer field", field.name) };
        let value = self.require(field)?;
        match value.as_i64().or_else(|| value.as_str().and_then(|s| s.trim().parse().ok())) {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(invalid(field.name, &format!("must be an integer from {min} to {max}"))),
        }
    }

    /// An exact decimal, from a JSON number (read from its text, never via a
    /// float) or a decimal string.
    fn decimal(&mut self, field: &Field) -> Result<Decimal, PayloadError> {
        let Kind::Decimal { min, max, positive } = field.kind else { unreachable!("{} is not a decimal field", field.name) };
        let text = match self.require(field)? {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.trim().to_owned(),
            _ => return Err(invalid(field.name, "must be a decimal number")),
        };
        let value = text
            .parse::<Decimal>()
            .or_else(|_| Decimal::from_scientific(&text))
            .map_err(|_| invalid(field.name, &format!("must be a decimal number of at most {max}")))?;
        if positive && value <= Decimal::ZERO {
            return Err(invalid(field.name, "must be greater than 0"));
        }
        if (!positive && value < min) || value > max {
            let range = if positive { format!("at most {max}") } else { format!("from {min} to {max}") };
            return Err(invalid(field.name, &format!("must be {range}")));
        }
        Ok(value)
    }

    /// A timestamp within [2020-01-01, now + 60 s]; its text as sent goes into the key.
    fn optional_time(&mut self, field: &Field) -> Result<Option<DateTime<Utc>>, PayloadError> {
        let Some((value, _)) = self.value(field) else { return Ok(None) };
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) if n.is_i64() => n.to_string(),
            _ => return Err(invalid(field.name, TIME_FORMAT)),
        };
        if super::payload::encoded_len(&text) > MAX_TIME_KEY_LEN {
            return Err(invalid(field.name, &format!("must be at most {MAX_TIME_KEY_LEN} characters once percent-encoded")));
        }
        let instant = instant(&text).ok_or_else(|| invalid(field.name, TIME_FORMAT))?;
        let earliest = Utc.timestamp_opt(EARLIEST_TIMESTAMP, 0).single().unwrap_or_default();
        if instant < earliest || instant > self.now + chrono::Duration::seconds(TIMESTAMP_FUTURE_SECS) {
            return Err(invalid(field.name, "must lie between 2020-01-01 and the receiver's clock (plus 60 s)"));
        }
        self.keep(field, &text);
        Ok(Some(instant))
    }
}

const TIME_FORMAT: &str = "must be an RFC 3339 timestamp, YYYY-MM-DD HH:MM:SS or unix seconds";

/// A partner timestamp as a UTC instant: RFC 3339 with any offset,
/// `YYYY-MM-DD HH:MM:SS` taken as UTC, or unix seconds.
fn instant(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return Some(t.and_utc());
    }
    text.parse::<i64>().ok().and_then(|s| DateTime::from_timestamp(s, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::payload::partner_event_id;

    fn now() -> DateTime<Utc> {
        "2026-12-02T12:00:00Z".parse().unwrap()
    }

    /// A value that satisfies `field`, made from its kind alone.
    fn valid(field: &Field) -> Value {
        match field.kind {
            Kind::Id { .. } | Kind::Text { .. } => Value::from("x"),
            Kind::OneOf(words) => Value::from(words[0]),
            Kind::Decimal { max, .. } => Value::from(max.to_string()),
            Kind::Integer { max, .. } => Value::from(max),
            Kind::Flag => Value::from(true),
            Kind::Time => Value::from("2026-12-02T12:00:00Z"),
        }
    }

    /// Values just past the bound, and other values `field` must refuse.
    fn out_of_bounds(field: &Field) -> Vec<Value> {
        match field.kind {
            Kind::Id { max, .. } | Kind::Text { max } => vec![Value::from("x".repeat(max + 1)), Value::from("a\u{0}b"), Value::from("a\u{1b}b"), Value::from(" ")],
            Kind::OneOf(_) => vec![Value::from("platinum"), Value::from(1)],
            Kind::Decimal { min, max, positive } => {
                let mut values = vec![Value::from((max + Decimal::new(1, 6)).to_string()), Value::from("5e28"), Value::from("NaN")];
                values.push(Value::from(if positive { "0".to_owned() } else { (min - Decimal::new(1, 6)).to_string() }));
                values
            }
            Kind::Integer { min, max } => vec![Value::from(max + 1), Value::from(min - 1), Value::from("many")],
            Kind::Flag => vec![Value::from("yes")],
            Kind::Time => vec![Value::from("2019-12-31T23:59:59Z"), Value::from(format!("2026-12-02T12:00:00.{}Z", "0".repeat(40))), Value::from("9999-01-01T00:00:00Z"), Value::from("2026-12-02T12:01:01Z"), Value::from("soon")],
        }
    }

    fn example(spec: &EventSpec) -> Map<String, Value> {
        spec.fields.iter().map(|f| (f.name.to_owned(), valid(f))).collect()
    }

    fn decode_map(spec: &EventSpec, map: &Map<String, Value>) -> Result<Decoded, PayloadError> {
        decode(spec, &Fields(map), now())
    }

    #[test]
    fn every_event_reads_an_example_made_from_its_spec_and_keys_on_its_key_fields() {
        for spec in EVENTS {
            let map = example(spec);
            let decoded = decode_map(spec, &map).unwrap_or_else(|e| panic!("{}/{}: {e}", spec.partner, spec.name));
            let key: Vec<String> = spec.fields.iter().filter(|f| f.key).map(|f| map[f.name].as_str().map(str::to_owned).unwrap_or_else(|| map[f.name].to_string())).collect();
            assert_eq!(decoded.key, key, "{}/{}", spec.partner, spec.name);
        }
    }

    #[test]
    fn every_required_field_of_the_spec_is_required_by_the_reader() {
        for spec in EVENTS {
            for field in spec.fields {
                let mut map = example(spec);
                map.remove(field.name);
                // A stand-in present in the example (review-submitted's booking_id) still names the field.
                let stood_in = field.stand_ins.iter().any(|s| map.contains_key(*s));
                match decode_map(spec, &map) {
                    Ok(_) => assert!(field.optional || stood_in, "{}/{} read without {}", spec.partner, spec.name, field.name),
                    Err(error) => assert_eq!(error, PayloadError::MissingField(field.name.into()), "{}/{}", spec.partner, spec.name),
                }
            }
        }
    }

    #[test]
    fn every_bound_of_the_spec_is_enforced_by_the_reader() {
        for spec in EVENTS {
            for field in spec.fields {
                for bad in out_of_bounds(field) {
                    let mut map = example(spec);
                    map.insert(field.name.to_owned(), bad.clone());
                    let error = decode_map(spec, &map).expect_err(&format!("{}/{}: {} = {bad}", spec.partner, spec.name, field.name));
                    assert_eq!(error.field(), Some(field.name), "{}/{}: {bad}", spec.partner, spec.name);
                }
            }
        }
    }

    #[test]
    fn every_key_at_its_bounds_still_fits_a_reversal_source() {
        for spec in EVENTS {
            let mut map = example(spec);
            for field in spec.fields.iter().filter(|f| f.key) {
                if let Kind::Id { max, .. } | Kind::Text { max } = field.kind {
                    map.insert(field.name.to_owned(), Value::from("x".repeat(max)));
                }
            }
            let decoded = decode_map(spec, &map).unwrap();
            let id = partner_event_id(spec.name, &decoded.key);
            let source = format!("reversal:{}:{id}", spec.partner);
            assert!(source.len() <= SOURCE_COLUMN_LEN, "{}/{}: {} characters", spec.partner, spec.name, source.len());
        }
    }

    #[test]
    fn bounds_leave_room_for_what_is_built_from_the_field() {
        // staking:{id}:{monday} and review-bonus:{booking} are sources too.
        assert!("staking:".len() + key_room("staking-started") + ":2026-12-07".len() <= SOURCE_COLUMN_LEN);
        assert!("review-bonus:".len() + BOOKING_ID_LEN <= SOURCE_COLUMN_LEN);
        assert_eq!(MAX_PARTNER_EVENT_ID_LEN, 237);
        assert_eq!(MAX_USER_ID_LEN, 249);
    }

    #[test]
    fn a_booking_reads_back_exactly_in_either_case_style() {
        let map: Map<String, Value> = serde_json::from_str(r#"{"bookingId":"bk_1","guestId":"g1","totalPrice":"200.10","nights":2}"#).unwrap();
        let spec = spec(Partner::Aurora, "booking-created").unwrap();
        assert_eq!(
            decode_map(spec, &map).unwrap().data,
            EventData::BookingCreated { booking: "bk_1".into(), guest: "g1".into(), total_price: "200.10".parse().unwrap(), nights: 2 }
        );
    }

    #[test]
    fn ticketing_times_with_any_offset_are_utc_instants() {
        let spec = spec(Partner::HiEvents, "event-status-changed").unwrap();
        let read_at = |t: &str| {
            let map: Map<String, Value> = serde_json::from_str(&format!(r#"{{"event_id":1,"status":"LIVE","updated_at":"{t}"}}"#)).unwrap();
            match decode_map(spec, &map).unwrap().data {
                EventData::TicketingStatusChanged { updated_at, .. } => updated_at,
                other => panic!("{other:?}"),
            }
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
    fn stripe_events_havend_cannot_use_say_why() {
        let read = |ty: &str, body: &str| decode_stripe(ty, &serde_json::from_str(body).unwrap());
        assert_eq!(
            read("payment_intent.succeeded", r#"{"data":{"object":{"amount_received":1999,"currency":"cad","metadata":{"haven_user_id":"g7"}}}}"#),
            Ok(EventData::StripePayment { user: "stripe:g7".into(), amount_minor: 1999, currency: "cad".into() })
        );
        let long_user = format!(r#"{{"data":{{"object":{{"amount_received":1,"currency":"cad","metadata":{{"haven_user_id":"{}"}}}}}}}}"#, "u".repeat(250));
        assert!(read("payment_intent.succeeded", &long_user).is_err());
        assert!(read("payment_intent.succeeded", r#"{"data":{"object":{"amount_received":1,"currency":"c\u0000d","metadata":{"haven_user_id":"g"}}}}"#).is_err());
        assert!(read("payout.paid", r#"{"data":{"object":{"metadata":{"redemption_id":"rd_1"}}}}"#).is_err());
        let id = "0190a5c2-7d2e-7c4a-9b1e-2f3a4b5c6d7e";
        assert_eq!(
            read("payout.failed", &format!(r#"{{"data":{{"object":{{"metadata":{{"redemption_id":"{id}"}}}}}}}}"#)),
            Ok(EventData::StripePayout { redemption: id.into(), paid: false })
        );
    }

    /// The README's table of field bounds, made from the spec.
    fn bounds_table() -> String {
        let mut table = String::from("| event | field | kept in | bound |\n|---|---|---|---|\n");
        for spec in EVENTS {
            for field in spec.fields {
                let bound = match field.kind {
                    Kind::Id { max, encoded: true } => format!("≤ {max} characters percent-encoded, no control characters"),
                    Kind::Id { max, encoded: false } | Kind::Text { max } => format!("≤ {max} characters, no control characters"),
                    Kind::OneOf(words) => words.join(" / "),
                    Kind::Decimal { max, positive: true, .. } => format!("> 0 and ≤ {max}"),
                    Kind::Decimal { min, max, .. } => format!("{min} to {max}"),
                    Kind::Integer { min, max } => format!("{min} to {max}"),
                    Kind::Flag => "true / false".into(),
                    Kind::Time => "2020-01-01 to now + 60 s".into(),
                };
                let name = match (field.stand_ins, field.optional) {
                    ([], false) => format!("`{}`", field.name),
                    ([], true) => format!("`{}` (optional)", field.name),
                    (stand_ins, _) => format!("`{}` (or `{}`)", field.name, stand_ins.join("`, `")),
                };
                let key = if field.key { ", key" } else { "" };
                table.push_str(&format!("| {}/{} | {name} | {}{key} | {bound} |\n", spec.partner, spec.name, field.stored_in));
            }
        }
        table
    }

    #[test]
    fn the_readme_lists_every_bound_of_the_spec() {
        let readme = include_str!("../../README.md");
        let table = bounds_table();
        assert!(readme.contains(&table), "README.md's bounds table differs from the spec; it should read:\n{table}");
    }
}
