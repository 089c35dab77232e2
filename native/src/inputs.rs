//! What the engine task hears and what it pushes to an application: the
//! types `runner.rs` (the engine task) and `app_socket.rs` (one task per
//! application) share, apart from both so neither imports the other.

use nym_client_core::{AppRequest, AppResponse};
use nym_client_core::{AppId, AttachError, ConnectionId};
use nym_client_core::ReceivedMessage;
use tokio::sync::{mpsc, oneshot};

/// What the engine task hears.
pub(crate) enum Input {
    GatewayOpen {
        conn: ConnectionId,
        writer: mpsc::UnboundedSender<Vec<u8>>,
    },
    GatewayFrame {
        conn: ConnectionId,
        frame: Vec<u8>,
    },
    GatewayClosed {
        conn: ConnectionId,
        why: String,
    },
    TopologyFetched(Result<String, String>),
    /// An application connected; `accepted` gets its id, or why it is refused.
    AppAttach {
        tx: mpsc::UnboundedSender<AppDelivery>,
        accepted: oneshot::Sender<Result<AppId, AttachError>>,
    },
    AppDetach {
        app: AppId,
        undelivered: Vec<ReceivedMessage>,
    },
    AppRequest {
        request: AppRequest,
        answer: oneshot::Sender<AppResponse>,
    },
}

/// What the engine pushes to an application.
pub(crate) enum AppDelivery {
    Message(ReceivedMessage),
    /// An error frame that answers no request: a message that failed (with
    /// its id), a gateway's complaint ([`nym_client_core::DriverEvent::for_applications`]).
    Notice(AppResponse),
}
