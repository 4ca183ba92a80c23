//! Sends one claimed alert to its channels: webhooks over hyper's client
//! (HTTP or HTTPS), e-mail over SMTP with `lettre`. Each attempt has a time
//! limit; failed attempts are retried on [`plan::retry_delays`]; every
//! attempt's result goes to `alert_logs`. Nothing secret is logged or stored:
//! a webhook appears as its scheme and host, an SMTP server as its host.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use entity::alerts;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use chrono::Utc;
use sea_orm::{ConnectionTrait, DbErr};
use tracing::{info, warn};
use uuid::Uuid;

use super::store::{self, DELIVERED, FAILED, LogEntry, RETRYING, THROTTLED, Throttled, UNROUTED};
use super::{Alert, plan};
use crate::config::{AlertsConfig, ChannelConfig, ChannelKind, SmtpTls};

/// Why one attempt failed. The messages never carry a webhook's path or
/// query nor an SMTP password.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The attempt did not finish within the time limit.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The webhook answered with a status other than 2xx.
    #[error("HTTP {status} from {origin}")]
    Status {
        /// The answer's status.
        status: u16,
        /// The webhook's scheme and host.
        origin: String,
    },
    /// The webhook could not be reached.
    #[error("cannot reach {origin}: {reason}")]
    Http {
        /// The webhook's scheme and host.
        origin: String,
        /// The transport's reason.
        reason: String,
    },
    /// The SMTP exchange failed.
    #[error("SMTP {host}: {reason}")]
    Smtp {
        /// The SMTP host.
        host: String,
        /// The client's or server's reason.
        reason: String,
    },
    /// The channel's settings cannot be used (checked at load, so rare: a CA file removed since).
    #[error("channel settings: {0}")]
    Settings(String),
}

/// An HTTP(S) client for webhook channels.
pub type WebhookClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the webhook client: HTTPS with the public (webpki) roots, plain
/// HTTP too (a local relay, the tests).
pub fn webhook_client() -> Result<WebhookClient, DeliveryError> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|error| DeliveryError::Settings(error.to_string()))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// What a delivery needs besides the alert.
#[derive(Clone)]
pub struct Delivery {
    /// The webhook client (shared: it pools connections).
    pub http: WebhookClient,
    /// Delivery settings and channels, as of the claim.
    pub config: Arc<AlertsConfig>,
    /// This daemon's name, recorded with every result.
    pub daemon: String,
}

/// Delivers one claimed alert (a round: each channel that has not taken it
/// yet, with its retries) and records the outcome (only while `token` holds
/// the claim): `failed` with the next round's time while the delivery
/// horizon allows one ([`plan::next_round`]). Returns the status.
pub async fn deliver(db: &impl ConnectionTrait, delivery: &Delivery, row: &alerts::Model, token: Uuid) -> Result<&'static str, DbErr> {
    let alert = Alert::from(row);
    let daemon = delivery.daemon.as_str();
    let channels = plan::route(&delivery.config.channels, alert.severity, &alert.category);
    if channels.is_empty() {
        store::log(db, LogEntry { alert: alert.id, channel: None, attempt: 0, outcome: UNROUTED, detail: None, daemon }).await?;
        store::finish(db, alert.id, token, UNROUTED, None).await?;
        return Ok(UNROUTED);
    }
    let window = Duration::from_secs(delivery.config.throttle_window_secs);
    let key = plan::throttle_key(&alert.category, alert.subject());
    let decision = match plan::throttles(&alert.category) {
        true => store::throttle(db, &key, alert.id, alert.created_at, window).await?,
        false => Throttled::Lead(0),
    };
    let repeats_before = match decision {
        Throttled::Lead(repeats_before) => repeats_before,
        Throttled::Repeat(nth) => {
            let detail = Some(format!("repeat {nth} within the {}s window", window.as_secs()));
            store::log(db, LogEntry { alert: alert.id, channel: None, attempt: 0, outcome: THROTTLED, detail, daemon }).await?;
            store::finish(db, alert.id, token, THROTTLED, None).await?;
            return Ok(THROTTLED);
        }
    };
    let history = store::channel_history(db, alert.id).await?;
    let mut status = DELIVERED;
    for channel in channels.into_iter().filter(|channel| !history.delivered.contains(&channel.name)) {
        let attempts_before = history.last_attempt.get(&channel.name).copied().unwrap_or(0);
        if !deliver_to(db, delivery, channel, &alert, repeats_before, attempts_before).await? {
            status = FAILED;
        }
    }
    let next_round = match status {
        FAILED => plan::next_round(&delivery.config, alert.created_at, Utc::now(), random_fraction()),
        _ => None,
    };
    match next_round {
        Some(at) => warn!(alert = %alert.id, next_round = %at, "Alert not delivered to every channel; trying again then"),
        None if status == FAILED => warn!(alert = %alert.id, horizon_secs = delivery.config.delivery_horizon_secs, "Alert not delivered within the delivery horizon; giving up"),
        None => {}
    }
    if !store::finish(db, alert.id, token, status, next_round).await? {
        warn!(alert = %alert.id, "Alert claim lapsed during delivery; another daemon may deliver it again");
    }
    Ok(status)
}

/// A uniformly random number in [0, 1), for [`plan::next_round`]'s jitter:
/// the top 48 bits of a v4 UUID, all random (its version bits come after).
fn random_fraction() -> f64 {
    (Uuid::new_v4().as_u128() >> 80) as f64 / (1u64 << 48) as f64
}

/// Tries one channel until it takes the alert or this round's retries run
/// out, logging every attempt (numbered on from `attempts_before`, the
/// earlier rounds'); true when it was delivered.
async fn deliver_to(db: &impl ConnectionTrait, delivery: &Delivery, channel: &ChannelConfig, alert: &Alert, repeats_before: i64, attempts_before: i32) -> Result<bool, DbErr> {
    let timeout = Duration::from_millis(delivery.config.timeout_ms);
    let mut delays = plan::retry_delays(&delivery.config);
    let mut attempt = attempts_before + 1;
    loop {
        let result = match tokio::time::timeout(timeout, send(delivery, channel, alert, repeats_before)).await {
            Ok(result) => result,
            Err(_) => Err(DeliveryError::Timeout(timeout)),
        };
        let next = if result.is_err() { delays.next() } else { None };
        let (outcome, detail) = match &result {
            Ok(detail) => (DELIVERED, detail.clone()),
            Err(error) if next.is_some() => (RETRYING, error.to_string()),
            Err(error) => (FAILED, error.to_string()),
        };
        let entry = LogEntry { alert: alert.id, channel: Some(&channel.name), attempt, outcome, detail: Some(detail.clone()), daemon: &delivery.daemon };
        store::log(db, entry).await?;
        match (outcome, next) {
            (DELIVERED, _) => {
                info!(alert = %alert.id, channel = %channel.name, attempt, "Alert delivered");
                return Ok(true);
            }
            (_, Some(delay)) => {
                warn!(alert = %alert.id, channel = %channel.name, attempt, error = %detail, retry_in = ?delay, "Alert delivery failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            (_, None) => {
                warn!(alert = %alert.id, channel = %channel.name, attempt, error = %detail, "Alert delivery round failed");
                return Ok(false);
            }
        }
    }
}

/// One attempt on one channel; on success a short note of where it went.
async fn send(delivery: &Delivery, channel: &ChannelConfig, alert: &Alert, repeats_before: i64) -> Result<String, DeliveryError> {
    match channel.kind {
        ChannelKind::Slack | ChannelKind::Discord | ChannelKind::Webhook => {
            let body = plan::webhook_body(channel.kind, alert, repeats_before, &delivery.daemon);
            post_json(&delivery.http, channel, body).await
        }
        ChannelKind::Email => send_email(channel, alert, repeats_before, &delivery.daemon, Duration::from_millis(delivery.config.timeout_ms)).await,
    }
}

async fn post_json(http: &WebhookClient, channel: &ChannelConfig, body: serde_json::Value) -> Result<String, DeliveryError> {
    let url = channel.url.as_ref().ok_or_else(|| DeliveryError::Settings("webhook channel without url".into()))?;
    let origin = crate::redact::url_origin(url.expose());
    let request = http::Request::post(url.expose())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, concat!("havend/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|_| DeliveryError::Settings(format!("invalid webhook URL for {origin}")))?;
    let response = http.request(request).await.map_err(|error| DeliveryError::Http { origin: origin.clone(), reason: scrub(&error_chain(&error), url.expose(), &origin) })?;
    let status = response.status();
    // Read the answer so the connection can be reused; its content does not matter.
    let _ = response.into_body().collect().await;
    if status.is_success() {
        Ok(format!("HTTP {} from {origin}", status.as_u16()))
    } else {
        Err(DeliveryError::Status { status: status.as_u16(), origin })
    }
}

async fn send_email(channel: &ChannelConfig, alert: &Alert, repeats_before: i64, daemon: &str, timeout: Duration) -> Result<String, DeliveryError> {
    let host = channel.host.clone().unwrap_or_default();
    let smtp = |reason: String| DeliveryError::Smtp { host: host.clone(), reason };
    let (subject, body) = plan::email(alert, repeats_before, daemon);
    let from: Mailbox = channel.from.as_deref().unwrap_or_default().parse().map_err(|e| DeliveryError::Settings(format!("from: {e}")))?;
    let mut message = Message::builder().from(from).subject(subject).header(ContentType::TEXT_PLAIN);
    for to in &channel.to {
        message = message.to(to.parse().map_err(|e| DeliveryError::Settings(format!("to: {e}")))?);
    }
    let message = message.body(body).map_err(|e| DeliveryError::Settings(e.to_string()))?;
    let transport = smtp_transport(channel, &host, timeout)?;
    let response = transport.send(message).await.map_err(|error| smtp(error_chain(&error)))?;
    Ok(format!("SMTP {host}: {}", response.code()))
}

fn smtp_transport(channel: &ChannelConfig, host: &str, timeout: Duration) -> Result<AsyncSmtpTransport<Tokio1Executor>, DeliveryError> {
    let tls = || -> Result<TlsParameters, DeliveryError> {
        let mut params = TlsParameters::builder(host.to_owned());
        if let Some(ca_file) = &channel.ca_file {
            let pem = std::fs::read(ca_file).map_err(|e| DeliveryError::Settings(format!("ca_file {}: {e}", ca_file.display())))?;
            let certificate = Certificate::from_pem(&pem).map_err(|e| DeliveryError::Settings(format!("ca_file {}: {e}", ca_file.display())))?;
            params = params.add_root_certificate(certificate);
        }
        params.build_rustls().map_err(|e| DeliveryError::Settings(e.to_string()))
    };
    let (security, default_port) = match channel.tls {
        SmtpTls::Starttls => (Tls::Required(tls()?), 587),
        SmtpTls::Tls => (Tls::Wrapper(tls()?), 465),
        SmtpTls::None => (Tls::None, 25),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(channel.port.unwrap_or(default_port))
        .tls(security)
        .timeout(Some(timeout));
    if let (Some(user), Some(password)) = (&channel.username, &channel.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    Ok(builder.build())
}

/// An error and its sources, one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Replaces the full webhook URL, should a transport error quote it, with its origin.
fn scrub(text: &str, url: &str, origin: &str) -> String {
    text.replace(url, origin)
}
