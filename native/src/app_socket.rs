//! The local websocket API (the seed's protocol, Nym 0.7) for applications:
//! one task per application connection, talking to the engine task.
//!
//! ## When received messages are pushed
//! The 0.7 protocol has no envelope: an application cannot tell a pushed
//! message from the answer to its request. So a connection pushes nothing
//! (messages, or errors that are not answers) while the application may be
//! waiting for an answer:
//! - never between reading a request and writing its answer (one task
//!   reads, answers, then pushes, in that order);
//! - not before the application has been quiet for `push_after_quiet`: after
//!   it connects, and after every answer to `selfAddress` or an error (the
//!   seed's programs send their next request at once);
//! - at once after the answer to `send`, `sendAnonymous` or `reply`: the
//!   application is now waiting for messages.
//!
//! Pushed messages come in the frame type of the application's last
//! request (text when it spoke text and the message is UTF-8), binary when
//! it has not spoken yet.

use crate::inputs::{AppDelivery, Input};
use crate::origin::OriginPolicy;
use futures_util::{SinkExt, StreamExt};
use nym_client_core::{AppRequest, AppResponse, DeliveryFrame, ReceivedMessage};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{handshake, http, Message};

pub(crate) struct AppServer {
    /// The engine's queue for applications (read before the gateway's).
    pub engine: mpsc::Sender<Input>,
    /// This client's address: `selfAddress` is answered here, without the engine.
    pub address: String,
    pub max_message_size: usize,
    pub origins: Arc<OriginPolicy>,
    pub push_after_quiet: Duration,
}

pub(crate) async fn serve(listener: TcpListener, server: AppServer) {
    let server = Arc::new(server);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(connection(stream, peer, server.clone()));
            }
            Err(e) => {
                tracing::warn!("accepting an application connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one application websocket.
async fn connection(stream: TcpStream, peer: SocketAddr, server: Arc<AppServer>) {
    // Room for a JSON-escaped message at the engine's limit, so that an
    // oversize message reaches the engine and gets a clear error.
    let limit = server.max_message_size.saturating_mul(2).saturating_add(1 << 20);
    let config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
    let ws = match tokio_tungstenite::accept_hdr_async_with_config(stream, check_origin(&server.origins), Some(config))
        .await
    {
        Ok(ws) => ws,
        Err(e) => {
            tracing::warn!("websocket handshake with {peer} failed: {e}");
            return;
        }
    };
    let (mut sink, mut source) = ws.split();
    let (dtx, mut drx) = mpsc::unbounded_channel();
    let (accepted_tx, accepted_rx) = oneshot::channel();
    if server.engine.send(Input::AppAttach { tx: dtx, accepted: accepted_tx }).await.is_err() {
        return;
    }
    let app = match accepted_rx.await {
        Ok(Ok(app)) => app,
        refused => {
            let why = match refused {
                Ok(Err(why)) => format!("{why} ([socket] max_applications)"),
                _ => "the client is shutting down".to_string(),
            };
            let _ = sink.send(Message::text(AppResponse::Error(why).to_json())).await;
            let _ = sink.close().await;
            return;
        }
    };
    let mut pushes =
        Pushes { held: VecDeque::new(), from: Instant::now() + server.push_after_quiet, last_was_text: false };
    loop {
        let release = pushes.from;
        let push_now = !pushes.held.is_empty() && release <= Instant::now();
        // Requests first (an answer is never held up by pushes), then held
        // pushes in order, then new deliveries.
        tokio::select! {
            biased;
            msg = source.next() => {
                let (response, release_pushes) = match msg {
                    Some(Ok(Message::Text(text))) => {
                        pushes.last_was_text = true;
                        match nym_client_core::parse_text_request(text.as_str()) {
                            Ok(req) => answer(req, &server.engine, &server.address).await,
                            Err(e) => (AppResponse::Error(e), false),
                        }
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        pushes.last_was_text = false;
                        match nym_client_core::parse_binary_request(&bytes) {
                            Ok(req) => answer(req, &server.engine, &server.address).await,
                            Err(e) => (AppResponse::Error(e), false),
                        }
                    }
                    Some(Ok(Message::Close(_))) => {
                        // tungstenite queued the answer (the same code): send it.
                        let _ = sink.flush().await;
                        break;
                    }
                    None => break,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        tracing::warn!("application websocket error: {e}");
                        let _ = sink.send(Message::text(AppResponse::Error(format!("websocket error: {e}")).to_json())).await;
                        break;
                    }
                };
                if sink.send(Message::text(response.to_json())).await.is_err() {
                    break;
                }
                pushes.from = if release_pushes { Instant::now() } else { Instant::now() + server.push_after_quiet };
            }
            _ = std::future::ready(()), if push_now => {
                if let Some(d) = pushes.held.pop_front() {
                    if sink.send(pushes.frame(d)).await.is_err() {
                        break;
                    }
                }
            }
            delivery = drx.recv() => match delivery {
                Some(d) => pushes.held.push_back(d),
                None => break,
            },
            _ = tokio::time::sleep_until(release), if !pushes.held.is_empty() && !push_now => {}
        }
    }
    drx.close();
    let mut undelivered: Vec<ReceivedMessage> = pushes
        .held
        .into_iter()
        .filter_map(|d| match d {
            AppDelivery::Message(m) => Some(m),
            AppDelivery::Notice(_) => None,
        })
        .collect();
    while let Ok(d) = drx.try_recv() {
        if let AppDelivery::Message(m) = d {
            undelivered.push(m);
        }
    }
    let _ = server.engine.send(Input::AppDetach { app, undelivered }).await;
}

/// Pushes waiting for the application to be ready for them.
struct Pushes {
    held: VecDeque<AppDelivery>,
    /// Not before this.
    from: Instant,
    last_was_text: bool,
}

impl Pushes {
    /// A received message as the application sees it: anonymous ones as
    /// `received` JSON with their sender tag, others as sent.
    fn frame(&self, delivery: AppDelivery) -> Message {
        match delivery {
            AppDelivery::Message(message) => {
                let bytes = match &message.sender_tag {
                    Some(tag) => nym_client_core::received_json(&message.message, tag).into_bytes(),
                    None => message.message,
                };
                match nym_client_core::delivery_frame(bytes, self.last_was_text) {
                    DeliveryFrame::Text(t) => Message::text(t),
                    DeliveryFrame::Binary(b) => Message::binary(b),
                }
            }
            AppDelivery::Notice(notice) => Message::text(notice.to_json()),
        }
    }
}

/// The answer to a request, and whether pushes may follow it at once.
async fn answer(request: AppRequest, engine: &mpsc::Sender<Input>, address: &str) -> (AppResponse, bool) {
    if request == AppRequest::SelfAddress {
        // The address never changes: answered even when the engine is busy.
        return (AppResponse::SelfAddress(address.to_string()), false);
    }
    let (tx, rx) = oneshot::channel();
    if engine.send(Input::AppRequest { request, answer: tx }).await.is_err() {
        return (AppResponse::Error("the client is shutting down".into()), false);
    }
    match rx.await {
        Ok(response) => {
            let accepted = matches!(response, AppResponse::Send { .. });
            (response, accepted)
        }
        Err(_) => (AppResponse::Error("the client is shutting down".into()), false),
    }
}

/// The upgrade callback: a request from a web page (it carries an `Origin`)
/// is refused with 403 unless the page's origin is allowed.
fn check_origin(
    origins: &OriginPolicy,
) -> impl FnOnce(
    &handshake::server::Request,
    handshake::server::Response,
) -> Result<handshake::server::Response, handshake::server::ErrorResponse>
       + '_ {
    move |request, response| {
        let Some(origin) = request.headers().get(http::header::ORIGIN) else { return Ok(response) };
        let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        if origins.allows(&origin) {
            return Ok(response);
        }
        tracing::warn!(
            "refused a websocket connection from a web page of origin '{origin}' (not in [socket] allowed_origins)"
        );
        let mut refusal = handshake::server::ErrorResponse::new(Some(format!(
            "web pages of origin '{origin}' may not use this client; allow it with [socket] allowed_origins or --allow-origin\n"
        )));
        *refusal.status_mut() = http::StatusCode::FORBIDDEN;
        Err(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pushed_failure_names_its_message_and_an_error_has_no_id() {
        let pushes = Pushes { held: VecDeque::new(), from: Instant::now(), last_was_text: false };
        let failed = AppResponse::SendFailed { id: 42, message: "lost".into() };
        let Message::Text(text) = pushes.frame(AppDelivery::Notice(failed)) else { panic!("not text") };
        let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(v, serde_json::json!({"type": "error", "message": "lost", "id": 42}));
        let Message::Text(text) = pushes.frame(AppDelivery::Notice(AppResponse::Error("full".into()))) else {
            panic!("not text")
        };
        let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(v, serde_json::json!({"type": "error", "message": "full"}));
    }
}
