//! The session with our gateway: the handshake, then every frame sealed
//! and opened under it.
//!
//! [`Gateway`] owns the connection's state (down, handshaking,
//! authenticating, up) and its session keys. It reads a frame only far
//! enough to move the handshake on and hands the rest to the client as an
//! [`Incoming`]; it seals what the client sends once the session is up.
//! What the frames carry (deliveries, acks) is the client's business.

use crate::error::{Error, Result};
use nym_wire::gateway::{ClientHandshake, ClientRequest, GatewayResponse, Session};
use rand::CryptoRng;
use x25519_dalek::StaticSecret;

pub(super) struct Gateway {
    /// The gateway's identity key: it signs its half of the handshake.
    identity: [u8; 32],
    state: State,
}

enum State {
    Down,
    Handshaking(ClientHandshake),
    /// Handshake sent; waiting for `Authenticated`.
    Authenticating(Session),
    Up(Session),
}

/// What a frame from the gateway means for the client.
pub(super) enum Incoming {
    /// The handshake goes on: this frame goes back to the gateway.
    Handshake(Vec<u8>),
    /// The gateway accepted us; traffic flows.
    Connected,
    /// The gateway refused us, or its answer was bad; the connection is down.
    HandshakeFailed(String),
    /// A message from the gateway (a delivery, an error).
    Response(GatewayResponse),
    /// A frame that did not open or decode; the connection stays.
    Malformed(Error),
}

impl Gateway {
    pub(super) fn new(identity: [u8; 32]) -> Self {
        Gateway { identity, state: State::Down }
    }

    pub(super) fn identity(&self) -> [u8; 32] {
        self.identity
    }

    /// Authenticated: frames can be sealed.
    pub(super) fn is_up(&self) -> bool {
        matches!(self.state, State::Up(_))
    }

    /// A new connection: starts the handshake and returns its first frame.
    pub(super) fn connect<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, client_key: &StaticSecret) -> Vec<u8> {
        let (handshake, hello) = ClientHandshake::start(rng, client_key, self.identity);
        self.state = State::Handshaking(handshake);
        hello
    }

    pub(super) fn disconnect(&mut self) {
        self.state = State::Down;
    }

    /// A frame from the gateway; `None` when there is no connection for it.
    pub(super) fn open(&mut self, frame: &[u8]) -> Option<Incoming> {
        let incoming = match std::mem::replace(&mut self.state, State::Down) {
            State::Down => return None,
            State::Handshaking(handshake) => match handshake.finish(frame) {
                Ok((session, authenticate)) => {
                    self.state = State::Authenticating(session);
                    Incoming::Handshake(authenticate)
                }
                Err(e) => Incoming::HandshakeFailed(e.to_string()),
            },
            State::Authenticating(mut session) => match open_response(&mut session, frame) {
                Ok(GatewayResponse::Authenticated { .. }) => {
                    self.state = State::Up(session);
                    Incoming::Connected
                }
                Ok(GatewayResponse::Error { message }) => Incoming::HandshakeFailed(format!("gateway refused us: {message}")),
                other => {
                    self.state = State::Authenticating(session);
                    Incoming::from(other)
                }
            },
            State::Up(mut session) => {
                let response = open_response(&mut session, frame);
                self.state = State::Up(session);
                Incoming::from(response)
            }
        };
        Some(incoming)
    }

    /// `request` sealed for the gateway; only once the session is up.
    pub(super) fn seal(&mut self, request: &ClientRequest) -> Result<Vec<u8>> {
        match &mut self.state {
            State::Up(session) => Ok(session.seal(&request.encode())),
            _ => Err(Error::NotConnected),
        }
    }
}

fn open_response(session: &mut Session, frame: &[u8]) -> Result<GatewayResponse> {
    Ok(GatewayResponse::decode(&session.open(frame)?)?)
}

impl From<Result<GatewayResponse>> for Incoming {
    fn from(response: Result<GatewayResponse>) -> Self {
        match response {
            Ok(response) => Incoming::Response(response),
            Err(e) => Incoming::Malformed(e),
        }
    }
}
