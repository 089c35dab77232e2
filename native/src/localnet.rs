//! `run --localnet`: the small mixnet of `nym-mixnet` (a directory, 3x2
//! mixnodes, 2 gateways on 127.0.0.1 free ports), inside this process.

use anyhow::Result;
pub use nym_mixnet::localnet::{Localnet, LocalnetConfig};

/// Starts the local mixnet with its node keys (and gateway inboxes) under
/// `$HOME/.nym/localnet`, so they persist from one run to the next and a
/// client initialised against it stays valid.
pub async fn start() -> Result<Localnet> {
    Localnet::start(LocalnetConfig::new(crate::localnet_dir()?)).await
}
