//! A gateway: the last mix hop, and the clients' entry point. Clients'
//! `Forward` requests go into the mixnet.
//!
//! ## What a gateway keeps until its client has it
//! Every final-hop payload for a registered client is written to the SQLite
//! inbox first (a writer thread commits whatever arrived meanwhile in one
//! transaction), and only then does its SURB-ACK go back to the sender: an
//! acknowledged message is on disk. A connected client is then sent the
//! stored message with a delivery id of its connection, and the row is
//! deleted only when the client's `Ack` names that id. What is unacknowledged
//! when a connection ends (closed, cut, the client frozen or killed, the
//! gateway restarted) stays stored and is delivered again on the next
//! connection. A payload that can't be stored (unknown client, full inbox,
//! writer queue full) is dropped and counted, with no SURB-ACK, so the sender
//! retransmits or learns of the failure.
//!
//! ## Bounded before and after authentication
//! Before a client has proved its key the gateway holds little for it: a
//! bounded number of such connections, a handshake rate per source address,
//! a byte allowance for the whole handshake, and a rate and a cap for new
//! registrations ([`admission`]). After, what it keeps is bounded and
//! expires ([`InboxLimits`]): a payload past a bound is not
//! stored and not acknowledged, and counted in `dropped_limit`.
//!
//! ## Rooms
//! [`config`] (what it is told), [`lifecycle`] (start, stop, what it
//! tells), [`session`] (a client's connection), [`store`] (the store
//! pipeline and its writer thread), [`inbox`] (the SQLite inbox and its
//! bounds), [`admission`] (bounds before authentication), [`metrics`] (what
//! its `/metrics` adds).

mod admission;
pub mod config;
mod inbox;
mod lifecycle;
pub(crate) mod metrics;
mod session;
mod store;

pub use admission::{AdmissionLimits, DEFAULT_ADMISSION};
pub use config::{GatewayConfig, DEFAULT_INBOX_LIMIT, DEFAULT_MAX_CLIENT_MESSAGE, MIN_MAX_CLIENT_MESSAGE};
pub use inbox::{InboxLimits, DB_FILE, DEFAULT_INBOX_LIMITS};
pub use lifecycle::Gateway;
