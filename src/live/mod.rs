//! Live updates (`GET /api/v1/stream`): the journal of status changes that
//! database triggers write into `stream_events` ([`store`]), and the rule
//! that turns what a poll sees into what a client is sent ([`Cursor`]).
//!
//! # The gap rule
//! Journal ids come from a sequence when a row is inserted, but rows become
//! visible when their transaction commits, so id 7 can be visible while id 6
//! is still uncommitted. A client is sent only the contiguous run of ids
//! after the last one it was sent. When the next id is missing (a *gap*)
//! the stream waits; the time the gap was first seen is remembered, and once
//! it has stayed open for the grace period (`stream.gap_grace_ms`) the
//! missing ids are given up on — a rolled-back transaction leaves a hole in
//! the sequence forever. So an id is skipped only if it stayed uncommitted
//! for the whole grace period after a later id was visible; a transaction
//! that commits within the grace period is always delivered, in id order.
//! Each new gap gets a fresh grace period (never shorter than the rule
//! says, occasionally longer).

pub mod store;

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

/// Where one client's stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The last id sent (or skipped past).
    last: i64,
    /// The open gap: the first missing id and when it was first seen missing.
    gap: Option<(i64, Instant)>,
}

/// What [`Cursor::advance`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advance {
    /// The ids to send now, in order (a prefix of those offered).
    pub deliver: Vec<i64>,
    /// How many ids were given up on (gaps past the grace period).
    pub skipped: i64,
}

impl Cursor {
    /// A cursor after `last` (a client's `Last-Event-ID`, or the journal's end).
    pub fn new(last: i64) -> Self {
        Self { last, gap: None }
    }

    /// The last id sent or skipped past: the next poll asks for ids above it.
    pub fn last(&self) -> i64 {
        self.last
    }

    /// Whether a gap is open (the caller keeps polling on its timer).
    pub fn waiting(&self) -> bool {
        self.gap.is_some()
    }

    /// Takes the ids a poll saw above [`Cursor::last`] (ascending) and returns
    /// the ones to send, by the module's gap rule.
    pub fn advance(&mut self, visible: &[i64], now: Instant, grace: Duration) -> Advance {
        let mut advance = Advance::default();
        for &id in visible {
            if id <= self.last {
                continue;
            }
            let expected = self.last + 1;
            if id > expected {
                match self.gap {
                    Some((missing, since)) if missing == expected && now.saturating_duration_since(since) >= grace => {
                        advance.skipped += id - expected;
                    }
                    Some((missing, _)) if missing == expected => break,
                    _ => {
                        self.gap = Some((expected, now));
                        break;
                    }
                }
            }
            self.last = id;
            self.gap = None;
            advance.deliver.push(id);
        }
        advance
    }
}

/// The SSE event name of a journal row.
pub fn event_name(row: &entity::stream_events::Model) -> &'static str {
    if row.topic == "ticketing" { "ticketing" } else { "transaction" }
}

/// The `data:` JSON of a journal row.
pub fn event_data(row: &entity::stream_events::Model) -> Value {
    if row.topic == "ticketing" {
        return json!({ "event_id": row.subject, "status": row.status, "updated_at": row.occurred_at });
    }
    let id = uuid::Uuid::parse_str(&row.subject).map(|id| id.to_string()).unwrap_or_else(|_| row.subject.clone());
    let amount = row.amount.as_deref().and_then(|a| alloy::primitives::U256::from_str_radix(a, 10).ok()).map(crate::chain::format_units);
    json!({
        "transaction_id": id,
        "kind": row.kind,
        "status": row.status,
        "amount": amount,
        "tx_hash": row.tx_hash,
        "user": row.user_ref,
        "updated_at": row.occurred_at,
    })
}

/// One SSE frame for a journal row: `id`, `event`, `data` (one line of JSON).
pub fn frame(row: &entity::stream_events::Model) -> String {
    format!("id: {}\nevent: {}\ndata: {}\n\n", row.id, event_name(row), event_data(row))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GRACE: Duration = Duration::from_secs(3);

    #[test]
    fn contiguous_ids_are_delivered_and_a_gap_waits() {
        let start = Instant::now();
        let mut cursor = Cursor::new(5);
        assert_eq!(cursor.advance(&[6, 7, 9, 10], start, GRACE).deliver, vec![6, 7]);
        assert!(cursor.waiting());
        assert_eq!(cursor.advance(&[9, 10], start + Duration::from_secs(1), GRACE).deliver, Vec::<i64>::new());
        // 8 commits late, within the grace period: delivered in order.
        assert_eq!(cursor.advance(&[8, 9, 10], start + Duration::from_secs(2), GRACE).deliver, vec![8, 9, 10]);
        assert!(!cursor.waiting());
        assert_eq!(cursor.last(), 10);
    }

    #[test]
    fn a_gap_older_than_the_grace_period_is_skipped() {
        let start = Instant::now();
        let mut cursor = Cursor::new(0);
        assert!(cursor.advance(&[3, 4], start, GRACE).deliver.is_empty());
        let advance = cursor.advance(&[3, 4], start + GRACE, GRACE);
        assert_eq!(advance, Advance { deliver: vec![3, 4], skipped: 2 });
        // A new gap gets its own grace period.
        assert!(cursor.advance(&[6], start + GRACE, GRACE).deliver.is_empty());
        assert!(cursor.advance(&[6], start + GRACE + Duration::from_secs(1), GRACE).deliver.is_empty());
        assert_eq!(cursor.advance(&[6], start + GRACE * 2, GRACE).deliver, vec![6]);
    }

    proptest! {
        /// Ids commit at random times (some never: rollbacks); a client polls
        /// every 100 ms. Sent ids strictly increase, every id is sent or
        /// skipped, and an id is skipped only if it was still uncommitted
        /// when skipped and had been seen missing at least the grace period
        /// earlier.
        #[test]
        fn delivered_ids_increase_and_only_aged_gaps_are_skipped(
            commits in proptest::collection::vec(proptest::option::weighted(0.9, 0u64..8_000), 1..40),
            limit in 1usize..50,
        ) {
            let start = Instant::now();
            let grace = Duration::from_millis(1_000);
            let committed_at = |id: i64, t: u64| commits[(id - 1) as usize].is_some_and(|c| c <= t);
            let mut cursor = Cursor::new(0);
            let mut sent: Vec<i64> = Vec::new();
            // When each id was first seen missing (a later id visible, it not).
            let mut seen_missing: std::collections::HashMap<i64, u64> = Default::default();
            let n = commits.len() as i64;
            let mut skipped_ids: Vec<i64> = Vec::new();
            for step in 0..200u64 {
                let t = step * 100;
                let visible: Vec<i64> = (cursor.last() + 1..=n).filter(|&id| committed_at(id, t)).take(limit).collect();
                if let Some(&highest) = visible.last() {
                    for id in cursor.last() + 1..highest {
                        if !committed_at(id, t) {
                            seen_missing.entry(id).or_insert(t);
                        }
                    }
                }
                let before = cursor.last();
                let advance = cursor.advance(&visible, start + Duration::from_millis(t), grace);
                let mut skipped = 0;
                let mut previous = before;
                for &id in &advance.deliver {
                    prop_assert!(id > previous, "ids strictly increase");
                    for missing in previous + 1..id {
                        skipped += 1;
                        skipped_ids.push(missing);
                        prop_assert!(!committed_at(missing, t), "id {missing} was committed yet skipped");
                        let first = seen_missing.get(&missing).copied();
                        prop_assert!(first.is_some_and(|f| f + grace.as_millis() as u64 <= t), "id {missing} skipped before its gap aged");
                    }
                    previous = id;
                }
                prop_assert_eq!(skipped, advance.skipped);
                sent.extend(&advance.deliver);
            }
            // Long after the last commit, every id up to the last committed
            // one was either sent or (uncommitted when) skipped.
            let last_committed = (1..=n).filter(|&id| commits[(id - 1) as usize].is_some()).max().unwrap_or(0);
            for id in 1..=last_committed {
                prop_assert!(sent.contains(&id) != skipped_ids.contains(&id), "id {id} neither sent nor skipped, or both");
            }
            prop_assert!(sent.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
