//! The delivery actor: polls the alerts table (and is nudged by [`super::raise`]
//! in this process), claims a batch of undelivered alerts and delivers them
//! concurrently. A crash loses nothing: unfinished claims lapse and are
//! taken again, by this daemon or another.

use std::time::Duration;

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sea_orm::DatabaseConnection;
use tokio::task::{JoinHandle, JoinSet};
use tracing::warn;
use uuid::Uuid;

use super::deliver::{self, Delivery, WebhookClient};
use super::store;
use crate::config::ConfigHandle;

/// Messages the delivery actor handles.
pub enum AlertMsg {
    /// The periodic poll (alerts of other daemons and processes, lapsed claims).
    Tick,
    /// An alert was raised in this process (or the last batch was full): claim now.
    Nudge,
}

/// The alert delivery actor.
pub struct AlertActor;

/// What the delivery actor starts with.
pub struct AlertArgs {
    /// The alerts table.
    pub db: DatabaseConnection,
    /// Config; channels and delivery settings are read per batch, so a reload applies to the next one.
    pub config: ConfigHandle,
}

/// The delivery actor's state.
pub struct AlertState {
    /// The alerts table.
    db: DatabaseConnection,
    /// Config, read per batch.
    config: ConfigHandle,
    /// Shared by every webhook delivery (connection pooling).
    http: WebhookClient,
    /// Forwards [`super::raise`]'s nudges as messages; stopped with the actor.
    nudges: JoinHandle<()>,
}

impl Actor for AlertActor {
    type Msg = AlertMsg;
    type State = AlertState;
    type Arguments = AlertArgs;

    async fn pre_start(&self, myself: ActorRef<AlertMsg>, args: AlertArgs) -> Result<AlertState, ActorProcessingErr> {
        let http = deliver::webhook_client()?;
        let nudger = myself.clone();
        let nudges = tokio::spawn(async move {
            loop {
                super::raised().await;
                if nudger.cast(AlertMsg::Nudge).is_err() {
                    return;
                }
            }
        });
        myself.cast(AlertMsg::Tick)?;
        Ok(AlertState { db: args.db, config: args.config, http, nudges })
    }

    async fn handle(&self, myself: ActorRef<AlertMsg>, msg: AlertMsg, state: &mut AlertState) -> Result<(), ActorProcessingErr> {
        if state.run_batch().await {
            // More may be waiting: go on after whatever else is in the mailbox.
            myself.cast(AlertMsg::Nudge)?;
        }
        if matches!(msg, AlertMsg::Tick) {
            let poll = Duration::from_millis(state.config.load().alerts.poll_interval_ms);
            myself.send_after(poll, || AlertMsg::Tick);
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<AlertMsg>, state: &mut AlertState) -> Result<(), ActorProcessingErr> {
        state.nudges.abort();
        Ok(())
    }
}

impl AlertState {
    /// Claims one batch and delivers it; true when the batch was full.
    async fn run_batch(&mut self) -> bool {
        let config = self.config.load_full();
        let settings = std::sync::Arc::new(config.alerts.clone());
        let token = Uuid::now_v7();
        let claimed = match store::claim(&self.db, token, settings.lease(), settings.batch, Utc::now()).await {
            Ok(claimed) => claimed,
            Err(error) => {
                warn!(%error, "Cannot claim alerts for delivery; retrying at the next poll");
                return false;
            }
        };
        let full = claimed.len() as u64 == settings.batch;
        let delivery = Delivery { http: self.http.clone(), config: settings, daemon: config.daemon_name.clone() };
        let mut deliveries = JoinSet::new();
        for alert in claimed {
            let (db, delivery) = (self.db.clone(), delivery.clone());
            deliveries.spawn(async move {
                if let Err(error) = deliver::deliver(&db, &delivery, &alert, token).await {
                    // The claim lapses and the alert is delivered again later.
                    warn!(alert = %alert.id, %error, "Alert delivery could not be recorded; it will be retried");
                }
            });
        }
        while let Some(joined) = deliveries.join_next().await {
            if let Err(error) = joined {
                warn!(%error, "An alert delivery task failed; its claim lapses and it is retried");
            }
        }
        full
    }
}
