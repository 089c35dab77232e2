//! Periodic self-announcement to the directory: before each announcement the
//! node signs its descriptor afresh with its identity key, with a new `seq`.

use crate::http::DirectoryClient;
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Descriptor sequence numbers: Unix time in milliseconds, strictly
/// increasing (`max(now, last + 1)`) even if the clock stalls or steps back.
#[derive(Debug, Default)]
pub(crate) struct SeqClock {
    last: u64,
}

impl SeqClock {
    pub(crate) fn next(&mut self, now_ms: u64) -> u64 {
        self.last = now_ms.max(self.last.saturating_add(1));
        self.last
    }
}

/// Announces `sign(seq)` to `path` every `interval` until cancelled. A
/// refusal is logged with the directory's reason once per change of reason,
/// not every tick.
pub(crate) fn spawn_announcer<T, F>(
    client: DirectoryClient,
    path: &'static str,
    sign: F,
    interval: Duration,
    cancel: CancellationToken,
) where
    T: Serialize + Send + Sync + 'static,
    F: Fn(u64) -> T + Send + 'static,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = SeqClock::default();
        // what went wrong last time (None: it worked)
        let mut problem: Option<String> = None;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let body = sign(seq.next(now_ms()));
            let now = match client.announce(path, &body).await {
                Ok(Ok(())) => None,
                Ok(Err(refusal)) => Some(format!(
                    "the directory {} refused our announcement ({refusal})",
                    client.base()
                )),
                Err(e) => Some(format!("cannot announce to {}: {e:#}", client.base())),
            };
            if now != problem {
                match &now {
                    Some(p) => tracing::warn!("{p}"),
                    None => tracing::info!("announcing to {} works", client.base()),
                }
                problem = now;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_is_time_and_strictly_increasing() {
        let mut c = SeqClock::default();
        assert_eq!(c.next(1000), 1000);
        assert_eq!(c.next(1000), 1001, "same millisecond");
        assert_eq!(c.next(500), 1002, "clock stepped back");
        assert_eq!(c.next(5000), 5000);
    }
}
