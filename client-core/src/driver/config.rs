//! The driver's settings: every default both shims share, and the one rule
//! for their bounds ([`DriverConfig::bounded`]), applied by [`super::Driver::new`]
//! whatever the shim read from its config file or options.

use crate::client::ClientConfig;
use std::time::Duration;

/// Every default of the client that the native config and the browser
/// options share, in one place.
pub mod defaults {
    use std::time::Duration;

    /// How often the topology is fetched again.
    pub const TOPOLOGY_REFRESH: Duration = Duration::from_secs(30);
    /// The shortest topology refresh period a config may ask for.
    pub const MIN_TOPOLOGY_REFRESH: Duration = Duration::from_secs(1);
    /// After the gateway refused a departed first hop, the topology is
    /// fetched at once, but at most this often.
    pub const EARLY_TOPOLOGY_FETCH_GAP: Duration = Duration::from_secs(2);
    /// First wait before reconnecting to the gateway; doubles per failure.
    pub const RECONNECT_INITIAL: Duration = Duration::from_millis(500);
    /// Longest wait between reconnection attempts.
    pub const RECONNECT_MAX: Duration = Duration::from_secs(30);
    /// From asking for a connection to a completed handshake.
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
    /// A connection that lived this long resets the reconnect backoff.
    pub const STABLE_CONNECTION: Duration = Duration::from_secs(10);
    /// Received messages kept while no application is attached.
    pub const KEPT_MESSAGES: usize = 1000;
    /// Bytes of received messages kept while no application is attached.
    pub const KEPT_BYTES: usize = 256 * 1024 * 1024;
    /// Applications attached at once.
    pub const MAX_APPLICATIONS: usize = 16;
    /// SURBs sent with an anonymous message when the application names no count.
    pub const REPLY_SURBS: usize = crate::app_api::DEFAULT_REPLY_SURBS;
    /// Attempts at the first topology fetch before the driver gives up
    /// starting ([`super::super::StartError::Topology`]): the network may still
    /// be starting, a browser may be coming back online.
    pub const FIRST_FETCH_ATTEMPTS: u32 = 5;
    /// The wait after the first failed attempt at the first fetch; it
    /// doubles per attempt up to [`FIRST_FETCH_RETRY_MAX`].
    pub const FIRST_FETCH_RETRY_INITIAL: Duration = Duration::from_millis(250);
    /// The longest wait between two attempts at the first fetch.
    pub const FIRST_FETCH_RETRY_MAX: Duration = Duration::from_secs(4);
    /// An attempt at the first fetch that brought no answer within this
    /// long counts as failed (a fetch that hangs must not hang the start).
    pub const FIRST_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
    /// A refresh fetch that brought no answer within this long counts as
    /// failed, and the next goes to the next authority.
    pub const TOPOLOGY_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

    /// The wait before the next attempt at the first topology fetch once
    /// attempt `failed` (1-based) failed; `None` when it was the last one.
    pub fn first_fetch_retry(failed: u32) -> Option<Duration> {
        if failed >= FIRST_FETCH_ATTEMPTS {
            return None;
        }
        let doublings = failed.saturating_sub(1).min(16);
        Some((FIRST_FETCH_RETRY_INITIAL * 2u32.pow(doublings)).min(FIRST_FETCH_RETRY_MAX))
    }
}

/// What the driver needs besides the engine's own [`ClientConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct DriverConfig {
    /// The engine's own settings (traffic rates, packet size, retransmission).
    pub client: ClientConfig,
    /// From asking for a connection to a completed handshake; then the
    /// connection is closed and counts as failed.
    pub handshake_timeout: Duration,
    /// The first wait before reconnecting; doubles per failed attempt.
    pub reconnect_initial: Duration,
    /// The longest wait between reconnection attempts.
    pub reconnect_max: Duration,
    /// A handshaken connection that closes after this long resets the backoff.
    pub stable_connection: Duration,
    /// How often the topology is fetched again.
    pub topology_refresh: Duration,
    /// Applications attached at once; more are refused.
    pub max_applications: usize,
    /// Received messages kept while no application is attached (the oldest
    /// go first, down to nine tenths, past either limit).
    pub kept_messages: usize,
    /// Bytes of received messages kept while no application is attached.
    pub kept_bytes: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            client: ClientConfig::default(),
            handshake_timeout: defaults::HANDSHAKE_TIMEOUT,
            reconnect_initial: defaults::RECONNECT_INITIAL,
            reconnect_max: defaults::RECONNECT_MAX,
            stable_connection: defaults::STABLE_CONNECTION,
            topology_refresh: defaults::TOPOLOGY_REFRESH,
            max_applications: defaults::MAX_APPLICATIONS,
            kept_messages: defaults::KEPT_MESSAGES,
            kept_bytes: defaults::KEPT_BYTES,
        }
    }
}

impl DriverConfig {
    /// The one rule for the settings' bounds, whoever read them: no
    /// timeout or backoff of zero (a busy loop), a topology refresh of at
    /// least [`defaults::MIN_TOPOLOGY_REFRESH`] (the directory is not
    /// hammered), a longest backoff no shorter than the first, and room for
    /// at least one application.
    pub fn bounded(self) -> Self {
        let at_least_1ms = |d: Duration| d.max(Duration::from_millis(1));
        let reconnect_initial = at_least_1ms(self.reconnect_initial);
        DriverConfig {
            handshake_timeout: at_least_1ms(self.handshake_timeout),
            reconnect_initial,
            reconnect_max: self.reconnect_max.max(reconnect_initial),
            stable_connection: at_least_1ms(self.stable_connection),
            topology_refresh: self.topology_refresh.max(defaults::MIN_TOPOLOGY_REFRESH),
            max_applications: self.max_applications.max(1),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_fetch_backs_off_doubling_to_its_cap_and_then_gives_up() {
        let waits: Vec<_> = (1..=defaults::FIRST_FETCH_ATTEMPTS).map(defaults::first_fetch_retry).collect();
        let ms = |v: u64| Some(Duration::from_millis(v));
        assert_eq!(waits, vec![ms(250), ms(500), ms(1000), ms(2000), None]);
        assert_eq!(defaults::first_fetch_retry(100), None);
    }

    #[test]
    fn bounds_lift_zeros_and_leave_sane_values_alone() {
        let zero = DriverConfig {
            handshake_timeout: Duration::ZERO,
            reconnect_initial: Duration::ZERO,
            reconnect_max: Duration::ZERO,
            stable_connection: Duration::ZERO,
            topology_refresh: Duration::ZERO,
            max_applications: 0,
            ..DriverConfig::default()
        }
        .bounded();
        assert_eq!(zero.handshake_timeout, Duration::from_millis(1));
        assert_eq!((zero.reconnect_initial, zero.reconnect_max), (Duration::from_millis(1), Duration::from_millis(1)));
        assert_eq!(zero.topology_refresh, defaults::MIN_TOPOLOGY_REFRESH);
        assert_eq!(zero.max_applications, 1);
        let inverted = DriverConfig { reconnect_max: Duration::from_millis(10), ..DriverConfig::default() }.bounded();
        assert_eq!(inverted.reconnect_max, defaults::RECONNECT_INITIAL);
        assert_eq!(DriverConfig::default().bounded(), DriverConfig::default());
    }
}
