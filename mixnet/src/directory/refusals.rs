//! Why the directory refuses an announcement: each refusal has an HTTP
//! status, an `error` text for the node's operator, and a [`AnnounceRefusal`]
//! (the `reason` label of `nym_directory_announcements_total`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nym_wire::address::encode_key;

/// Why the directory refused an announcement: the `reason` label of
/// `nym_directory_announcements_total{result="refused"}` (docs/metrics.md
/// and docs/topology-document.md say when each applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceRefusal {
    /// 429: past `--source-rate`/`--source-burst` for its source IP.
    SourceRate,
    /// 429: `--max-sources` source IPs are tracked already.
    TooManySources,
    /// 413: the body is over `--max-body`.
    BodyTooLarge,
    /// 400: not a descriptor's JSON.
    BadJson,
    /// 400: the descriptor's signature does not verify.
    BadSignature,
    /// 403: the identity is not on the `--admit` list.
    NotAdmitted,
    /// 403: no `--admit` list and not `--open`: closed to every identity.
    Closed,
    /// 400: a key, address or layer in the descriptor is invalid.
    BadDescriptor,
    /// 400: a version this directory does not serve.
    Version,
    /// 400: signed further in the future than `--max-clock-skew-secs`.
    ClockSkew,
    /// 400: its Sphinx keys are not for the epoch it was signed in and the
    /// next (under the directory's `--epoch-secs`).
    EpochKeys,
    /// 409: signed longer ago than `--max-descriptor-age-secs`.
    Stale,
    /// 409: a seq not greater than the last accepted from the identity.
    Replayed,
    /// 429: past `--identity-rate`/`--identity-burst` for its identity.
    IdentityRate,
    /// 429: too many identities announcing or remembered.
    TooManyIdentities,
    /// 409: a live mixnode announcing as a gateway, or the other way round.
    RoleConflict,
    /// 409: an address (mix listener or client listener) held by another live node.
    AddressHeld,
    /// 429: the directory lists `--max-nodes` already.
    Full,
}

impl AnnounceRefusal {
    pub const ALL: [AnnounceRefusal; 18] = [
        AnnounceRefusal::SourceRate,
        AnnounceRefusal::TooManySources,
        AnnounceRefusal::BodyTooLarge,
        AnnounceRefusal::BadJson,
        AnnounceRefusal::BadSignature,
        AnnounceRefusal::NotAdmitted,
        AnnounceRefusal::Closed,
        AnnounceRefusal::BadDescriptor,
        AnnounceRefusal::Version,
        AnnounceRefusal::ClockSkew,
        AnnounceRefusal::EpochKeys,
        AnnounceRefusal::Stale,
        AnnounceRefusal::Replayed,
        AnnounceRefusal::IdentityRate,
        AnnounceRefusal::TooManyIdentities,
        AnnounceRefusal::RoleConflict,
        AnnounceRefusal::AddressHeld,
        AnnounceRefusal::Full,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            AnnounceRefusal::SourceRate => "source_rate",
            AnnounceRefusal::TooManySources => "too_many_sources",
            AnnounceRefusal::BodyTooLarge => "body_too_large",
            AnnounceRefusal::BadJson => "bad_json",
            AnnounceRefusal::BadSignature => "bad_signature",
            AnnounceRefusal::NotAdmitted => "not_admitted",
            AnnounceRefusal::Closed => "closed",
            AnnounceRefusal::BadDescriptor => "bad_descriptor",
            AnnounceRefusal::Version => "version",
            AnnounceRefusal::ClockSkew => "clock_skew",
            AnnounceRefusal::EpochKeys => "epoch_keys",
            AnnounceRefusal::Stale => "stale",
            AnnounceRefusal::Replayed => "replayed",
            AnnounceRefusal::IdentityRate => "identity_rate",
            AnnounceRefusal::TooManyIdentities => "too_many_identities",
            AnnounceRefusal::RoleConflict => "role_conflict",
            AnnounceRefusal::AddressHeld => "address_held",
            AnnounceRefusal::Full => "full",
        }
    }
}

/// A refused announcement: the status and the `error` text, and which
/// refusal it is (the `reason` label of its metric).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: StatusCode,
    pub reason: String,
    pub why: AnnounceRefusal,
}

pub(super) fn refuse<T>(why: AnnounceRefusal, status: StatusCode, reason: impl Into<String>) -> Result<T, Refused> {
    Err(Refused {
        status,
        reason: reason.into(),
        why,
    })
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.reason }))).into_response()
    }
}

/// The refusal of an address another live node holds.
pub(super) fn held(what: &str, addr: &str, holder: &[u8; 32]) -> Refused {
    Refused {
        why: AnnounceRefusal::AddressHeld,
        status: StatusCode::CONFLICT,
        reason: format!(
            "{what} {addr} is held by another live node (identity {}); it is free again when that entry expires",
            encode_key(holder)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_refusal_has_its_own_label() {
        let labels: HashSet<&str> = AnnounceRefusal::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), AnnounceRefusal::ALL.len());
        for (i, r) in AnnounceRefusal::ALL.iter().enumerate() {
            assert_eq!(
                *r as usize, i,
                "ALL is in declaration order (the counters are indexed by it)"
            );
        }
    }
}
