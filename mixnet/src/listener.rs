//! The one accept loop of every TCP listener a node serves (mixnet packets,
//! gateway clients, metrics): accept until cancelled; a failed accept (out of
//! file descriptors, say) is logged and retried after a pause rather than
//! ending the listener.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The pause after a failed accept.
const RETRY_AFTER: Duration = Duration::from_millis(50);

/// Hands every accepted connection to `on_accept` until `cancel`; a failed
/// accept is logged as `{failed}: {error}`.
pub(crate) async fn accept_until_cancelled(
    listener: TcpListener,
    cancel: &CancellationToken,
    failed: &str,
    mut on_accept: impl FnMut(TcpStream, SocketAddr),
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => on_accept(stream, peer),
            Err(e) => {
                tracing::warn!("{failed}: {e}");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}
