//! Replay protection: the set of Sphinx replay tags seen under this node's key.
//!
//! Two generations of a hash set: when the current one holds `capacity` tags
//! or is `max_age` old, it becomes the previous one and the old previous one
//! is forgotten. Memory stays bounded (2 x capacity tags); a replay is caught
//! as long as its original is within the last one to two generations.

use std::collections::HashSet;
use std::time::{Duration, Instant};

pub const DEFAULT_CAPACITY: usize = 1_000_000;
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

pub struct ReplayFilter {
    current: HashSet<[u8; 32]>,
    previous: HashSet<[u8; 32]>,
    capacity: usize,
    max_age: Duration,
    started: Instant,
}

impl ReplayFilter {
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        ReplayFilter {
            current: HashSet::new(),
            previous: HashSet::new(),
            capacity: capacity.max(1),
            max_age,
            started: Instant::now(),
        }
    }

    /// Records `tag`; false when it was seen before (a replay).
    pub fn insert(&mut self, tag: [u8; 32]) -> bool {
        if self.previous.contains(&tag) || self.current.contains(&tag) {
            return false;
        }
        if self.current.len() >= self.capacity || self.started.elapsed() >= self.max_age {
            self.previous = std::mem::take(&mut self.current);
            self.started = Instant::now();
        }
        self.current.insert(tag);
        true
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for ReplayFilter {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_MAX_AGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catches_replays_and_stays_bounded() {
        let mut f = ReplayFilter::new(10, Duration::from_secs(60));
        assert!(f.insert([1; 32]));
        assert!(!f.insert([1; 32]));
        for i in 0..100u8 {
            f.insert([i; 32]);
            assert!(f.len() <= 20);
        }
        assert!(!f.insert([99; 32]));
    }
}
