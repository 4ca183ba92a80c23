//! `GET /api/v1/stream`: server-sent events of transaction and ticketing
//! status changes, read from the `stream_events` journal (see
//! [`crate::live`] for the gap rule).
//!
//! Each stream is a task that polls the journal and feeds frames into the
//! response body through a channel. A client reconnecting with
//! `Last-Event-ID` resumes from the database, so nothing depends on this
//! daemon's memory (or on it being the same daemon). `?user=<ref>` keeps
//! only that user's transaction events (ticketing events belong to no user
//! and are left out). The task ends when the client goes away or the daemon
//! shuts down, which ends the body so the connection can close.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use sea_orm::DatabaseConnection;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use super::{ApiError, AppState, Response};
use crate::config::StreamConfig;
use crate::live::{self, Cursor, store};

/// The header a reconnecting client names its last event with.
pub const LAST_EVENT_ID: &str = "last-event-id";
/// Journal rows read per poll; a full batch is followed by another read at once.
const BATCH: u64 = 500;
/// Frames buffered per stream before the task waits for the client.
const CHANNEL_FRAMES: usize = 64;
/// A client that reads nothing for this long loses its stream, so a stalled
/// reader cannot hold a slot (or delay shutdown) indefinitely.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// What a client is told to wait before reconnecting (SSE `retry:`).
const RECONNECT_MS: u64 = 2_000;

type Sender = mpsc::Sender<Result<Frame<Bytes>, Infallible>>;

/// Opens a stream: 503 over `stream.max_streams`, 400 for a malformed
/// `Last-Event-ID`; otherwise a `text/event-stream` response whose body a
/// polling task fills. A client without `Last-Event-ID` starts with the
/// changes of the last `stream.gap_grace_ms`: a change whose id was taken
/// before the client came but commits after it is still sent (ids are
/// visible at commit, not in id order), at the price of a few seconds of
/// history the client may have seen elsewhere (events carry their id).
pub async fn open(state: &AppState, request: &Request<Incoming>) -> Result<Response, ApiError> {
    let settings = state.config.load().stream.clone();
    let last = last_event_id(request.headers())?;
    let user = user_filter(request.uri().query());
    let permit = state.streams.clone().try_acquire_owned().map_err(|_| ApiError::too_many_streams(settings.max_streams))?;
    let last = match last {
        Some(last) => last,
        None => {
            let cutoff = chrono::Utc::now() - Duration::from_millis(settings.gap_grace_ms);
            store::newest_before(&state.db, cutoff).await?
        }
    };
    let (sender, receiver) = mpsc::channel(CHANNEL_FRAMES);
    tokio::spawn(run(state.db.clone(), settings, last, user, sender, state.shutdown.clone(), permit));
    let mut response = http::Response::new(StreamBody::new(ReceiverStream::new(receiver)).boxed());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Asks nginx-like proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The client's `Last-Event-ID`, if any; 400 when it is not a journal id.
fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(LAST_EVENT_ID) else { return Ok(None) };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|id| *id >= 0)
        .map(Some)
        .ok_or_else(|| ApiError::validation("Last-Event-ID", "Last-Event-ID must be the id of an event this stream sent"))
}

/// The `user` query parameter, percent-decoded.
fn user_filter(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("user="))
        .map(|value| percent_encoding::percent_decode_str(&value.replace('+', " ")).decode_utf8_lossy().into_owned())
        .filter(|user| !user.is_empty())
}

/// One stream's task: polls the journal and sends what the gap rule lets
/// through, plus keep-alive comments, until the client leaves or the daemon
/// stops. The permit is released when it ends.
async fn run(
    db: DatabaseConnection,
    settings: StreamConfig,
    last: i64,
    user: Option<String>,
    sender: Sender,
    mut shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let grace = Duration::from_millis(settings.gap_grace_ms);
    let keepalive_every = Duration::from_secs(settings.keepalive_secs);
    let mut keepalive = tokio::time::interval_at(Instant::now() + keepalive_every, keepalive_every);
    let mut poll = tokio::time::interval(Duration::from_millis(settings.poll_interval_ms));
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    if !send(&sender, format!(": connected\nretry: {RECONNECT_MS}\n\n")).await {
        return;
    }
    let mut cursor = Cursor::new(last);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = super::stopped(&mut shutdown) => {
                debug!("Shutting down; ending a live-update stream");
                break;
            }
            _ = sender.closed() => break,
            _ = keepalive.tick() => {
                if !send(&sender, ": keep-alive\n\n".to_owned()).await {
                    break;
                }
            }
            _ = poll.tick() => {
                match deliver(&db, &mut cursor, user.as_deref(), grace, &sender).await {
                    Ok(true) => failing = false,
                    Ok(false) => break,
                    Err(error) => {
                        // Keep the stream open: the next poll retries, and a
                        // reconnect resumes from the database anyway.
                        if !failing {
                            warn!(%error, "Live-update stream cannot read the journal; retrying");
                        }
                        failing = true;
                    }
                }
            }
        }
    }
}

/// Reads the journal after the cursor and sends what the gap rule lets
/// through; `Ok(false)` when the client is gone.
async fn deliver(
    db: &DatabaseConnection,
    cursor: &mut Cursor,
    user: Option<&str>,
    grace: Duration,
    sender: &Sender,
) -> Result<bool, sea_orm::DbErr> {
    loop {
        let rows = store::after(db, cursor.last(), BATCH).await?;
        let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        let advance = cursor.advance(&ids, Instant::now(), grace);
        if advance.skipped > 0 {
            warn!(skipped = advance.skipped, up_to = cursor.last(), "Live-update stream gave up on journal ids that stayed uncommitted past the grace period");
        }
        for row in rows.iter().filter(|row| advance.deliver.binary_search(&row.id).is_ok()) {
            let wanted = match user {
                Some(user) => row.topic == "transaction" && row.user_ref.as_deref() == Some(user),
                None => true,
            };
            if wanted && !send(sender, live::frame(row)).await {
                return Ok(false);
            }
        }
        // A full batch delivered whole: more may be waiting.
        if rows.len() < BATCH as usize || advance.deliver.len() < rows.len() {
            return Ok(true);
        }
    }
}

/// Sends one frame; false when the client is gone.
/// Queues one frame; false when the client is gone or has not read for
/// [`SEND_TIMEOUT`] (its stream then ends and frees its slot; it may
/// reconnect with `Last-Event-ID`).
async fn send(sender: &Sender, text: String) -> bool {
    matches!(tokio::time::timeout(SEND_TIMEOUT, sender.send(Ok(Frame::data(Bytes::from(text))))).await, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_filter_is_percent_decoded() {
        assert_eq!(user_filter(Some("user=aurora%3Aguest_1")), Some("aurora:guest_1".into()));
        assert_eq!(user_filter(Some("x=1&user=tribe:m_2")), Some("tribe:m_2".into()));
        assert_eq!(user_filter(Some("user=")), None);
        assert_eq!(user_filter(None), None);
    }

    #[test]
    fn last_event_id_must_be_a_journal_id() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers).unwrap(), None);
        headers.insert(LAST_EVENT_ID, HeaderValue::from_static("42"));
        assert_eq!(last_event_id(&headers).unwrap(), Some(42));
        headers.insert(LAST_EVENT_ID, HeaderValue::from_static("abc"));
        assert_eq!(last_event_id(&headers).unwrap_err().status, 400);
    }
}
