//! Start-up, decided once for both shims: the first topology fetch (retried
//! with [`defaults::first_fetch_retry`], each attempt at the next authority,
//! then a clear [`StartError::Topology`] naming each authority's last
//! failure), its verification, trust on first use of a single directory's
//! key (the key to keep comes out as a [`StoreName::DirectoryKey`] write),
//! and the gateway choice.
//!
//! `nym-client init` makes the same decisions without a driver (it only
//! registers): [`verify_first_topology`] and [`choose_gateway`].

use super::{defaults, Driver, DriverEvent, Link, Output, StartError, StoreName, StoreWrite};
use crate::address::encode_key;
use crate::VerifiedTopology;
use nym_wire::authority::Authorities;
use nym_wire::topology::{Gateway, Topology};
use rand::seq::IndexedRandom;
use rand::Rng;
use std::time::Duration;

/// Where the driver is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Made, not started.
    New,
    /// Fetching the first topology: attempt `attempt` is out (until
    /// `deadline`), or waits to go at `retry_at`.
    FirstFetch { attempt: u32, pending: FirstFetch },
    /// Started: the link and the refresh schedule run.
    Running,
    /// Stopped, or could not start: nothing more happens.
    Stopped,
}

/// The state of one attempt at the first fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FirstFetch {
    /// Asked for; counts as failed at `deadline`.
    Out { deadline: Duration },
    /// Failed; the next attempt goes at `retry_at`.
    Waiting { retry_at: Duration },
}

/// Checks the first topology document: signed by at least the threshold of
/// `pinned`, or, with none pinned, by the authority that served it (trust on
/// first use: keep `document.signers.learned` of the result), fresh at
/// `unix_time_ms`, every descriptor signed by its node.
pub fn verify_first_topology(
    text: &str,
    pinned: Option<&Authorities>,
    unix_time_ms: u64,
) -> Result<VerifiedTopology, nym_wire::Error> {
    crate::verify_topology(text, pinned, unix_time_ms, crate::VERSION)
}

/// The gateway a client uses: `preferred` (the one it registered with, or
/// the one asked for), which must be listed, or else one at random.
pub fn choose_gateway<'t, R: Rng + ?Sized>(
    topology: &'t Topology,
    preferred: Option<&[u8; 32]>,
    rng: &mut R,
) -> Result<&'t Gateway, StartError> {
    match preferred {
        Some(id) => topology.gateway(id).ok_or_else(|| StartError::GatewayNotInTopology(encode_key(id))),
        None => topology.gateways().choose(rng).ok_or(StartError::NoGateway),
    }
}

impl Driver {
    /// Asks for the next attempt at the first fetch.
    pub(super) fn fetch_first(&mut self, attempt: u32, now: Duration) {
        // Not a `last_fetch`: the first early refresh may go at once.
        self.stage =
            Stage::FirstFetch { attempt, pending: FirstFetch::Out { deadline: now + defaults::FIRST_FETCH_TIMEOUT } };
        self.outputs.push_back(Output::FetchTopology { url: self.directories.url() });
    }

    /// The first fetch's timer: a retry is due, or the attempt out took too long.
    pub(super) fn first_fetch_timeout(&mut self, now: Duration) {
        let Stage::FirstFetch { attempt, pending } = self.stage else {
            return;
        };
        match pending {
            FirstFetch::Waiting { retry_at } if retry_at <= now => self.fetch_first(attempt + 1, now),
            FirstFetch::Out { deadline } if deadline <= now => self.first_fetch_failed(
                attempt,
                format!("the authority did not answer within {} s", defaults::FIRST_FETCH_TIMEOUT.as_secs()),
                now,
            ),
            _ => {}
        }
    }

    /// When the first fetch's timer is due.
    pub(super) fn first_fetch_deadline(&self) -> Option<Duration> {
        match self.stage {
            Stage::FirstFetch { pending: FirstFetch::Out { deadline }, .. } => Some(deadline),
            Stage::FirstFetch { pending: FirstFetch::Waiting { retry_at }, .. } => Some(retry_at),
            _ => None,
        }
    }

    fn first_fetch_failed(&mut self, attempt: u32, reason: String, now: Duration) {
        let named = self.directories.named(&reason);
        self.directories.failed(&reason);
        let reason = named;
        match defaults::first_fetch_retry(attempt) {
            Some(retry_in) => {
                self.stage = Stage::FirstFetch { attempt, pending: FirstFetch::Waiting { retry_at: now + retry_in } };
                let attempts = defaults::FIRST_FETCH_ATTEMPTS;
                self.outputs.push_back(Output::Event(DriverEvent::FirstFetchFailed {
                    attempt,
                    attempts,
                    retry_in,
                    reason,
                }));
            }
            None => {
                let reason = self.directories.why_none();
                self.fail_start(StartError::Topology { attempts: attempt, reason })
            }
        }
    }

    fn fail_start(&mut self, error: StartError) {
        self.stage = Stage::Stopped;
        self.outputs.push_back(Output::Event(DriverEvent::StartFailed(error)));
    }

    /// An answer to the first fetch. A failure while no attempt is out (a
    /// late answer to one given up) changes nothing; a good document is
    /// good whenever it comes.
    pub(super) fn first_topology_fetched(&mut self, fetched: Result<&str, String>, now: Duration, unix_time_ms: u64) {
        let Stage::FirstFetch { attempt, pending } = self.stage else {
            return;
        };
        let verified = fetched.and_then(|text| {
            verify_first_topology(text, self.directories.trust().authorities(), unix_time_ms).map_err(|e| e.to_string())
        });
        let verified = match verified {
            Ok(v) => v,
            Err(reason) => {
                if matches!(pending, FirstFetch::Out { .. }) {
                    self.first_fetch_failed(attempt, reason, now);
                }
                return;
            }
        };
        let gateway = match choose_gateway(&verified.topology, self.gateway_identity.as_ref(), &mut self.rng) {
            Ok(g) => g.clone(),
            Err(e) => return self.fail_start(e),
        };
        if let Some(learned) = verified.document.signers.learned {
            // Trust on first use: from now on only this key's documents.
            let key = encode_key(&learned).into_bytes();
            self.outputs.push_back(Output::Persist { store: StoreName::DirectoryKey, write: StoreWrite::Replace(key) });
            self.directories.learned(learned);
        }
        self.gateway_identity = Some(gateway.identity_key);
        self.gateway_url = gateway.client_listener.clone();
        self.client.set_gateway(gateway.identity_key);
        self.outputs.push_back(Output::Event(DriverEvent::GatewayChosen {
            gateway: encode_key(&gateway.identity_key),
            url: gateway.client_listener,
        }));
        self.directories.succeeded();
        self.took_topology(&verified, now, unix_time_ms);
        self.client.handle_clock(now, unix_time_ms);
        self.client.handle_topology(verified.topology);
        self.stage = Stage::Running;
        debug_assert_eq!(self.link, Link::Idle);
        self.connect(now);
        self.refresh_at = Some(now + self.config.topology_refresh);
    }
}
