//! The engine's internals for the fuzz targets, the simulations and the
//! benchmarks, and the test harness they share. Only with the `fuzzing`
//! feature; not a stable API: it changes with the engine.
//!
//! - [`fragment`], [`payload`], [`reply`], [`packet`]: the parsers the fuzz
//!   targets feed, and the packet-building steps the benchmarks time.
//! - [`TestNetwork`] and [`FakeGateway`]: a 3-layer network with known keys
//!   and a gateway that speaks the real protocol, both in memory (in the way
//!   of quinn-proto's `Pair`): the simulations and the benchmarks build on
//!   them instead of each writing its own.

/// Messages as fragments, and their reassembly.
pub mod fragment {
    pub use crate::fragment::{split, Fragment, Insert, Link, Reassembler, HEADER_LEN};
}

/// The end-to-end layer of a packet's payload.
pub mod payload {
    pub use crate::payload::{body_capacity, open, seal, PayloadKind};
}

/// What anonymous messages and replies carry, and the reply store.
pub mod reply {
    pub use crate::reply::{Envelope, ReplyStore, MAX_SURBS_PER_MESSAGE};
}

/// Sphinx packets along a route.
pub mod packet {
    pub use crate::packet::build_sphinx_packet;
}

mod documents;
mod gateway;
mod network;

pub use documents::{sample_document, SampleDocument};
pub use gateway::{FakeGateway, Mood};
pub use network::{Hop, NodeKeys, TestGatewayNode, TestMixnode, TestNetwork, ONE_EPOCH_SECS};

/// A client config with no Poisson delays and no loop cover: packets leave
/// as fast as the test polls, and only the ones it asked for.
pub fn unthrottled() -> crate::ClientConfig {
    crate::ClientConfig {
        average_hop_delay: std::time::Duration::ZERO,
        average_packet_delay: std::time::Duration::ZERO,
        loop_cover_delay: std::time::Duration::ZERO,
        ..crate::ClientConfig::default()
    }
}
