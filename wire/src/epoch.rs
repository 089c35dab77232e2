//! Key epochs: Sphinx keys rotate, and every packet names the key it was
//! built for.
//!
//! Time is cut into epochs of one length for the whole network (the
//! directory's `--epoch-secs`, stated in every topology document as
//! `epochLengthSecs`). Epoch `e` covers Unix milliseconds
//! `[e * len, (e + 1) * len)`. A node publishes, in its signed descriptor,
//! its Sphinx key for the epoch it signs in and the next one; it holds the
//! keys of the previous, current and next epochs (so packets built near a
//! boundary, by clients whose clocks differ a little, still open) and
//! deletes older ones with their replay filters. A packet's frame carries
//! the epoch of the keys its whole route was built with
//! ([`crate::mix_frame`]); a node forwards it under the same epoch.
//! docs/key-epochs.md has the rules.

/// An epoch's number: Unix time divided by the epoch length.
pub type KeyEpoch = u32;

/// Today's Nym: a Sphinx key is used for about a day.
pub const DEFAULT_EPOCH_SECS: u64 = 24 * 60 * 60;

/// The shortest epoch anyone may configure (tests use a few seconds).
pub const MIN_EPOCH_SECS: u64 = 2;

/// The epoch `unix_ms` falls in, for epochs of `epoch_ms` milliseconds
/// (saturating: `epoch_ms` 0 is treated as 1).
pub fn epoch_at(unix_ms: u64, epoch_ms: u64) -> KeyEpoch {
    u32::try_from(unix_ms / epoch_ms.max(1)).unwrap_or(u32::MAX)
}

/// Unix milliseconds when `epoch` begins.
pub fn epoch_start_ms(epoch: KeyEpoch, epoch_ms: u64) -> u64 {
    u64::from(epoch).saturating_mul(epoch_ms.max(1))
}

/// Whether a packet built now for keys of `epoch` still opens when it
/// reaches its last hop: nodes hold the previous, current and next epochs'
/// keys, so a packet for the previous epoch is only safe while the current
/// one has more than `margin_ms` left (its hops may reach a node after the
/// next rotation otherwise). SURBs carry their epoch for this check.
pub fn key_usable(epoch: KeyEpoch, unix_ms: u64, epoch_ms: u64, margin_ms: u64) -> bool {
    let current = epoch_at(unix_ms, epoch_ms);
    if epoch == current || epoch == current.saturating_add(1) {
        return true;
    }
    if epoch.saturating_add(1) != current {
        return false;
    }
    let next_start = epoch_start_ms(current.saturating_add(1), epoch_ms);
    next_start.saturating_sub(unix_ms) > margin_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_cut_time_into_equal_spans() {
        assert_eq!(epoch_at(0, 1000), 0);
        assert_eq!(epoch_at(999, 1000), 0);
        assert_eq!(epoch_at(1000, 1000), 1);
        assert_eq!(epoch_start_ms(7, 1000), 7000);
        assert_eq!(epoch_at(epoch_start_ms(12345, 86_400_000), 86_400_000), 12345);
        assert_eq!(epoch_at(5, 0), 5, "a zero length is treated as 1 ms, not a division by zero");
        assert_eq!(epoch_at(u64::MAX, 1), u32::MAX);
    }

    #[test]
    fn a_key_is_usable_in_its_epoch_the_one_before_and_early_in_the_one_after() {
        let len = 10_000;
        // now: epoch 5, 2 s in
        let now = 52_000;
        assert!(key_usable(5, now, len, 1000));
        assert!(key_usable(6, now, len, 1000), "the next key: a client a little ahead");
        assert!(key_usable(4, now, len, 1000), "previous epoch, 8 s before it retires");
        assert!(!key_usable(4, 59_500, len, 1000), "previous epoch, 0.5 s before it retires");
        assert!(!key_usable(3, now, len, 0), "retired");
        assert!(!key_usable(7, now, len, 0), "not published yet");
    }
}
