//! Periodic self-announcement to the directory.

use crate::http::DirectoryClient;
use serde::Serialize;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub(crate) fn spawn_announcer<T: Serialize + Send + Sync + 'static>(
    client: DirectoryClient,
    path: &'static str,
    body: T,
    interval: Duration,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            match client.post_json(path, &body).await {
                Ok(()) => {
                    if failing {
                        tracing::info!("announcing to {} works again", client.base());
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!("cannot announce to {}: {e:#}", client.base());
                    }
                    failing = true;
                }
            }
        }
    });
}
