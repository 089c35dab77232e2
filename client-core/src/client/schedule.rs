//! When the client sends: the two Poisson streams of Loopix.
//!
//! The main stream ticks at exponentially distributed gaps of
//! `average_packet_delay`; each tick sends the next queued real packet or,
//! when none can go, a loop cover packet. The loop cover stream ticks at
//! gaps of `loop_cover_delay` and always sends cover. An observer of the
//! client's link sees the same rate whether or not the user is talking.
//! A zero mean turns its stream off (for the main stream: unthrottled,
//! packets are built when the shim asks for them).
//!
//! [`Schedule`] owns the next tick of each stream and the catch-up rule:
//! a shim that wakes late makes up at most [`MAX_CATCH_UP`] main-stream
//! ticks and then resumes from `now`, and the cover stream skips what it
//! missed by more than that many mean gaps, so a stall never becomes a
//! burst an observer could see. It decides when, not what: the client
//! sends at each due tick, then tells the schedule, which draws the next
//! gap (in that order, from the client's one rng).

use super::config::ClientConfig;
use crate::packet::sample_exp;
use rand::Rng;
use std::time::Duration;

/// Timer-driven sends to make up when the shim wakes late; more than this
/// would turn a stall into a burst an observer could see.
pub(super) const MAX_CATCH_UP: usize = 4;

/// The next tick of each stream; `None` while disconnected or off.
pub(super) struct Schedule {
    /// Mean gap of the main stream (real or cover); zero: off.
    packet_mean: Duration,
    /// Mean gap of the loop cover stream; zero: off.
    cover_mean: Duration,
    next_packet_at: Option<Duration>,
    next_cover_at: Option<Duration>,
}

impl Schedule {
    /// Both streams stopped until [`Schedule::start`].
    pub(super) fn new(config: &ClientConfig) -> Self {
        Schedule {
            packet_mean: config.average_packet_delay,
            cover_mean: config.loop_cover_delay,
            next_packet_at: None,
            next_cover_at: None,
        }
    }

    /// Connected: each stream that is on ticks first one gap after `now`.
    pub(super) fn start<R: Rng + ?Sized>(&mut self, now: Duration, rng: &mut R) {
        self.next_packet_at = (!self.packet_mean.is_zero()).then(|| now + sample_exp(rng, self.packet_mean));
        self.next_cover_at = (!self.cover_mean.is_zero()).then(|| now + sample_exp(rng, self.cover_mean));
    }

    /// Disconnected: nothing is sent until the next [`Schedule::start`].
    pub(super) fn stop(&mut self) {
        self.next_packet_at = None;
        self.next_cover_at = None;
    }

    /// The next tick of either stream.
    pub(super) fn next_tick(&self) -> Option<Duration> {
        [self.next_packet_at, self.next_cover_at].into_iter().flatten().min()
    }

    /// The main stream's tick, if it is due at `now`: send one packet,
    /// then call [`Schedule::packet_sent`] with it.
    pub(super) fn packet_due(&self, now: Duration) -> Option<Duration> {
        self.next_packet_at.filter(|at| *at <= now)
    }

    /// The packet of tick `at` went: the next tick is one gap after it.
    pub(super) fn packet_sent<R: Rng + ?Sized>(&mut self, at: Duration, rng: &mut R) {
        self.next_packet_at = Some(at + sample_exp(rng, self.packet_mean));
    }

    /// After making up [`MAX_CATCH_UP`] ticks: if the main stream is still
    /// behind, it woke too late to make up every tick; it resumes from
    /// `now`, no burst.
    pub(super) fn resume_if_behind<R: Rng + ?Sized>(&mut self, now: Duration, rng: &mut R) {
        if self.next_packet_at.is_some_and(|at| at <= now) {
            self.next_packet_at = Some(now + sample_exp(rng, self.packet_mean));
        }
    }

    /// The cover stream's tick, if it is due at `now`: send one cover
    /// packet, then call [`Schedule::cover_sent`] with it.
    pub(super) fn cover_due(&self, now: Duration) -> Option<Duration> {
        self.next_cover_at.filter(|at| *at <= now)
    }

    /// The cover packet of tick `at` went: the next tick is one gap after
    /// it, or after `now` when `at` is more than [`MAX_CATCH_UP`] mean
    /// gaps late (one cover packet for the whole stall).
    pub(super) fn cover_sent<R: Rng + ?Sized>(&mut self, at: Duration, now: Duration, rng: &mut R) {
        let from = if at + self.cover_mean * MAX_CATCH_UP as u32 <= now { now } else { at };
        self.next_cover_at = Some(from + sample_exp(rng, self.cover_mean));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn exponential_samples_have_the_configured_mean() {
        let mut rng = StdRng::from_seed([1; 32]);
        let mean = Duration::from_millis(20);
        let n = 20_000;
        let total: Duration = (0..n).map(|_| sample_exp(&mut rng, mean)).sum();
        let avg = total.as_secs_f64() / n as f64;
        assert!((avg - 0.020).abs() < 0.001, "mean {avg}");
        assert_eq!(sample_exp(&mut rng, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_late_wake_makes_up_a_few_ticks_then_resumes_from_now() {
        let mut rng = StdRng::from_seed([2; 32]);
        let config = ClientConfig::default();
        let mut schedule = Schedule::new(&config);
        assert_eq!(schedule.next_tick(), None);
        schedule.start(Duration::ZERO, &mut rng);
        let now = Duration::from_secs(10); // hundreds of ticks late
        let mut made_up = 0;
        while let Some(at) = schedule.packet_due(now).filter(|_| made_up < MAX_CATCH_UP) {
            schedule.packet_sent(at, &mut rng);
            made_up += 1;
        }
        assert_eq!(made_up, MAX_CATCH_UP);
        schedule.resume_if_behind(now, &mut rng);
        assert!(schedule.packet_due(now).is_none());
        let at = schedule.cover_due(now).expect("cover is due");
        schedule.cover_sent(at, now, &mut rng);
        assert!(schedule.cover_due(now).is_none(), "one cover packet for the whole stall");
        assert!(schedule.next_tick().is_some_and(|t| t > now));
        schedule.stop();
        assert_eq!(schedule.next_tick(), None);
    }
}
