//! Token buckets per key (a source IP, a node identity), with a bounded
//! number of keys: the limiter's own memory can't be flooded.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateRefusal {
    /// This key spent its burst; it gets a token back every `1 / rate` s.
    Limited,
    /// The limiter tracks `max_keys` keys that are all still active, so a new
    /// key is not admitted until some of them go quiet.
    TooManyKeys,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// `rate` requests a second per key, bursts of up to `burst`, at most
/// `max_keys` keys remembered. A key whose bucket has refilled completely
/// is forgotten when room is needed (it is then as good as new).
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: f64,
    burst: f64,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
    last_prune: Option<Instant>,
}

/// Full buckets are looked for at most this often when the map is full, so
/// a stream of new keys costs one scan per interval, not one per request.
const PRUNE_EVERY: Duration = Duration::from_millis(100);

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(rate: f64, burst: u32, max_keys: usize) -> Self {
        RateLimiter { rate: rate.max(0.0), burst: f64::from(burst.max(1)), max_keys: max_keys.max(1), buckets: HashMap::new(), last_prune: None }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
    }

    /// Takes one token for `key` at `now`. `always_room` lets a key in even
    /// when the map is full (for keys the caller must never lock out, such as
    /// listed nodes; the caller bounds how many there are).
    pub fn check(&mut self, key: &K, now: Instant, always_room: bool) -> Result<(), RateRefusal> {
        if let Some(mut b) = self.buckets.get(key).copied() {
            self.refill(&mut b, now);
            let ok = b.tokens >= 1.0;
            if ok {
                b.tokens -= 1.0;
            }
            self.buckets.insert(key.clone(), b);
            return if ok { Ok(()) } else { Err(RateRefusal::Limited) };
        }
        if self.buckets.len() >= self.max_keys && self.last_prune.is_none_or(|t| now.saturating_duration_since(t) >= PRUNE_EVERY) {
            self.last_prune = Some(now);
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst);
        }
        if self.buckets.len() >= self.max_keys && !always_room {
            return Err(RateRefusal::TooManyKeys);
        }
        self.buckets.insert(key.clone(), Bucket { tokens: self.burst - 1.0, at: now });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(10.0, 5, 100);
        for i in 0..5 {
            assert_eq!(l.check(&"a", t0, false), Ok(()), "burst request {i}");
        }
        assert_eq!(l.check(&"a", t0, false), Err(RateRefusal::Limited));
        // another key has its own bucket
        assert_eq!(l.check(&"b", t0, false), Ok(()));
        // 10/s: one token back after 100 ms, not before
        assert_eq!(l.check(&"a", t0 + Duration::from_millis(50), false), Err(RateRefusal::Limited));
        assert_eq!(l.check(&"a", t0 + Duration::from_millis(150), false), Ok(()));
        assert_eq!(l.check(&"a", t0 + Duration::from_millis(150), false), Err(RateRefusal::Limited));
        // refills to the burst, no further
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(l.check(&"a", later, false), Ok(()));
        }
        assert_eq!(l.check(&"a", later, false), Err(RateRefusal::Limited));
    }

    #[test]
    fn the_number_of_keys_is_bounded_and_quiet_keys_make_room() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(1.0, 2, 3);
        for k in 0..3 {
            assert_eq!(l.check(&k, t0, false), Ok(()));
        }
        assert_eq!(l.check(&3, t0, false), Err(RateRefusal::TooManyKeys));
        assert_eq!(l.len(), 3);
        // a key the caller must not lock out still gets in
        assert_eq!(l.check(&4, t0, true), Ok(()));
        assert_eq!(l.len(), 4);
        // once the keys have refilled they are forgotten and new ones fit
        let later = t0 + Duration::from_secs(10);
        assert_eq!(l.check(&5, later, false), Ok(()));
        assert_eq!(l.len(), 1);
        // a flood of fresh keys never grows the map past its bound
        for k in 100..10_000 {
            let _ = l.check(&k, later, false);
            assert!(l.len() <= 3);
        }
    }
}
