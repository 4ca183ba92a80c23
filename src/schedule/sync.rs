//! Partner sync (SPEC section 5): pull the events a partner's webhooks may
//! have missed from its API and store them in the same inbox, through the
//! same validation and the same deduplication key as a webhook, so an event
//! that arrived both ways is stored once.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use entity::sync_state;
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseConnection, DbErr, EntityTrait, Set};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::{Config, Secret};
use crate::intake::{Delivery, NewEvent, store};
use crate::webhooks::payload;
use crate::webhooks::Partner;

/// Why a sync did not finish (its high-water mark stays where it was).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The partner has no `sync_url`.
    #[error("partner {0} has no sync_url configured")]
    NotConfigured(Partner),
    /// The partner's API could not be reached or answered with an error.
    #[error("partner API: {0}")]
    Api(String),
    /// The partner's API answered something that is not the sync shape.
    #[error("partner API answered an unexpected body: {0}")]
    Shape(String),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// The partner API's answer.
#[derive(Debug, Deserialize)]
struct Page {
    events: Vec<SyncedEvent>,
    next_since: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SyncedEvent {
    event: String,
    payload: serde_json::Value,
}

/// What one sync did.
#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    /// The `since` asked for.
    pub since: String,
    /// Events the partner returned.
    pub fetched: usize,
    /// Of those, newly stored.
    pub stored: usize,
    /// Of those, already in the inbox (received by webhook or an earlier sync).
    pub duplicates: usize,
    /// Of those, refused by the webhook's own validation (logged, not stored).
    pub refused: usize,
    /// The high-water mark stored for the next sync.
    pub next_since: String,
}

/// Runs one sync of `partner`: asks from the stored high-water mark minus
/// the overlap (never the wall clock), stores what is new, and records the
/// partner's `next_since` in the same transaction as the events.
pub async fn run(db: &DatabaseConnection, config: &Config, partner: Partner) -> Result<SyncReport, SyncError> {
    let partner_config = config.partners.get(&partner).filter(|p| p.sync_url.is_some()).ok_or(SyncError::NotConfigured(partner))?;
    let url = partner_config.sync_url.clone().unwrap_or_default();
    let schedule = &config.schedule;
    let mark = sync_state::Entity::find_by_id(partner.as_str().to_owned()).one(db).await?;
    let since = match &mark {
        Some(mark) => mark.since - chrono::Duration::seconds(schedule.sync_overlap_secs as i64),
        None => Utc::now() - chrono::Duration::seconds(schedule.sync_first_lookback_secs as i64),
    };
    let since_text = since.to_rfc3339_opts(SecondsFormat::Secs, true);
    let page = fetch(&url, partner_config.api_key.as_ref(), Duration::from_millis(schedule.sync_timeout_ms), &since_text).await?;
    let next_since = match &page.next_since {
        // A mark from the partner's future would skip what happens until then.
        Some(text) => DateTime::parse_from_rfc3339(text).map_err(|_| SyncError::Shape(format!("next_since {text:?} is not RFC 3339")))?.with_timezone(&Utc).min(Utc::now()),
        // No mark from the partner: keep ours rather than invent one from our clock.
        None => mark.as_ref().map(|m| m.since).unwrap_or(since),
    };

    let now = Utc::now();
    let fetched = page.events.len();
    let selection = select(partner, page.events, now, uuid::Uuid::now_v7());
    let mut report = SyncReport { since: since_text, fetched, refused: selection.refused, duplicates: selection.duplicates, ..SyncReport::default() };
    // A partner echoing `since` (or answering an older mark) never moves the mark back.
    let next_since = mark.as_ref().map_or(next_since, |m| next_since.max(m.since));
    let stored = save(db, partner, &selection.events, next_since, now, report.refused).await?;
    report.stored = stored;
    report.duplicates += selection.events.len() - stored;
    report.next_since = next_since.to_rfc3339_opts(SecondsFormat::Secs, true);
    info!(%partner, fetched = report.fetched, stored, duplicates = report.duplicates, refused = report.refused, "Partner sync done");
    Ok(report)
}

/// Asks the partner's API at `url` for the events since `since_text`.
async fn fetch(url: &str, api_key: Option<&Secret>, timeout: Duration, since_text: &str) -> Result<Page, SyncError> {
    let client = reqwest::Client::builder().timeout(timeout).build().map_err(|e| SyncError::Api(e.to_string()))?;
    let mut endpoint = reqwest::Url::parse(url).map_err(|e| SyncError::Api(e.to_string()))?;
    endpoint.query_pairs_mut().append_pair("since", since_text);
    let mut request = client.get(endpoint);
    if let Some(key) = api_key {
        request = request.bearer_auth(key.expose());
    }
    // The URL may carry credentials in its query: errors name only its host.
    let host = reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    let response = request.send().await.map_err(|e| SyncError::Api(format!("{host}: {}", e.without_url())))?;
    if !response.status().is_success() {
        return Err(SyncError::Api(format!("{host} answered {}", response.status())));
    }
    response.json().await.map_err(|e| SyncError::Shape(e.without_url().to_string()))
}

/// What [`select`] keeps of a page: the inbox rows to store and counts of the rest.
#[derive(Debug)]
struct Selection {
    /// Known, valid events, each partner event id once, in the partner's order.
    events: Vec<NewEvent>,
    /// Events refused by the webhook's own validation (unknown or invalid).
    refused: usize,
    /// Events repeated within the page.
    duplicates: usize,
}

/// Picks what a page holds that a webhook may have missed: the events that
/// pass a webhook's validation, once per partner event id, as rows of the
/// sync `run_id` received at `now` (the inbox drops those already stored).
fn select(partner: Partner, page: Vec<SyncedEvent>, now: DateTime<Utc>, run_id: uuid::Uuid) -> Selection {
    let mut selection = Selection { events: Vec::new(), refused: 0, duplicates: 0 };
    let mut seen = HashSet::new();
    for synced in page {
        if !payload::is_known_event(partner, &synced.event) {
            warn!(%partner, event = %synced.event, "Sync returned an event havend does not know; skipped");
            selection.refused += 1;
            continue;
        }
        let body = Bytes::from(serde_json::to_vec(&synced.payload).unwrap_or_default());
        let parsed = match payload::parse(partner, Some(&synced.event), &body, now) {
            Ok(parsed) => parsed,
            Err(error) => {
                warn!(%partner, event = %synced.event, %error, "Sync returned an event that fails validation; skipped");
                selection.refused += 1;
                continue;
            }
        };
        if !seen.insert(parsed.partner_event_id.clone()) {
            selection.duplicates += 1;
            continue;
        }
        let delivery = Delivery {
            headers: serde_json::json!({ "source": "sync" }).to_string(),
            source_ip: None,
            request_id: format!("sync:{run_id}"),
            received_at: now,
        };
        selection.events.push(NewEvent::new(partner, parsed, body, delivery));
    }
    selection
}

/// Stores `events` and the partner's new mark in one transaction, with an
/// alert when `refused` events were skipped; returns how many were new.
async fn save(db: &DatabaseConnection, partner: Partner, events: &[NewEvent], next_since: DateTime<Utc>, now: DateTime<Utc>, refused: usize) -> Result<usize, SyncError> {
    let txn = crate::db::begin_write(db).await?;
    let stored = store::insert_new(&txn, &events.iter().collect::<Vec<_>>()).await?.len();
    let row = sync_state::ActiveModel {
        partner: Set(partner.as_str().to_owned()),
        since: Set(next_since),
        last_run_at: Set(now),
        last_stored: Set(stored as i32),
    };
    let on_conflict = OnConflict::column(sync_state::Column::Partner)
        .update_columns([sync_state::Column::Since, sync_state::Column::LastRunAt, sync_state::Column::LastStored])
        .to_owned();
    sync_state::Entity::insert(row).on_conflict(on_conflict).exec_without_returning(&txn).await?;
    if refused > 0 {
        // The mark moves past them in this commit, so the alert commits with
        // it: they are only seen again if the partner resends them.
        let message = format!("Partner sync of {partner} skipped {refused} events that fail a webhook's validation (see the log)");
        let details = serde_json::json!({ "partner": partner, "refused": refused });
        crate::alert::record(&txn, crate::alert::Severity::Warning, "sync_events_refused", &message, &details).await?;
    }
    txn.commit().await?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_keeps_valid_events_once_and_counts_the_rest() {
        let page: Page = serde_json::from_value(serde_json::json!({
            "events": [
                { "event": "booking-cancelled", "payload": { "id": "bk_1" } },
                { "event": "booking-exploded", "payload": { "id": "bk_2" } },
                { "event": "booking-created", "payload": { "id": "bk_3", "total_price": 1, "nights": 1 } },
                { "event": "booking-cancelled", "payload": { "bookingId": "bk_1" } },
                { "event": "booking-completed", "payload": { "id": "bk_1" } },
            ],
            "next_since": null,
        }))
        .unwrap();
        let now: DateTime<Utc> = "2026-12-02T12:00:00Z".parse().unwrap();
        let run_id = uuid::Uuid::now_v7();
        let selection = select(Partner::Aurora, page.events, now, run_id);
        assert_eq!((selection.refused, selection.duplicates), (2, 1));
        let keys: Vec<_> = selection.events.iter().map(|e| e.partner_event_id.as_str()).collect();
        assert_eq!(keys, ["booking-cancelled:bk_1", "booking-completed:bk_1"]);
        for event in &selection.events {
            assert_eq!((event.partner, event.received_at, event.source_ip.as_deref()), (Partner::Aurora, now, None));
            assert_eq!(event.request_id, format!("sync:{run_id}"));
            assert_eq!(event.headers, r#"{"source":"sync"}"#);
        }
    }
}
