//! What a gateway lets in before a client has proved who it is: a bounded
//! number of unauthenticated connections, a handshake rate per source
//! address, a byte allowance for the whole handshake, and a rate and a cap
//! for new registrations. Everything here runs before any key is known, so
//! it must cost the gateway little and hold nothing unbounded.

use crate::ratelimit::RateLimiter;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The admission settings (the gateway's flags of the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionLimits {
    /// Connections between accept and a completed handshake (`--max-unauthenticated`).
    pub max_unauthenticated: usize,
    /// Handshakes a second from one IP address (`--handshakes-per-source`);
    /// bursts of up to [`AdmissionLimits::handshake_burst`].
    pub handshakes_per_source: f64,
    /// Bytes a connection may send before it is authenticated: the HTTP
    /// upgrade request and the two handshake frames (`--max-handshake-bytes`).
    pub max_handshake_bytes: usize,
    /// New client keys registered a second, gateway-wide (`--registrations-per-sec`);
    /// bursts of up to ten seconds' worth.
    pub registrations_per_sec: f64,
}

pub const DEFAULT_ADMISSION: AdmissionLimits = AdmissionLimits {
    max_unauthenticated: 256,
    handshakes_per_source: 5.0,
    max_handshake_bytes: 16 * 1024,
    registrations_per_sec: 20.0,
};

/// Source addresses whose handshake buckets are remembered at once.
const MAX_SOURCES: usize = 65_536;

impl AdmissionLimits {
    /// A client that reconnects a few times in a row is not refused.
    pub fn handshake_burst(&self) -> u32 {
        (self.handshakes_per_source * 4.0).clamp(8.0, 1e6) as u32
    }

    fn registration_burst(&self) -> u32 {
        (self.registrations_per_sec * 10.0).clamp(10.0, 1e6) as u32
    }
}

/// Why a connection or a registration was refused; the text goes to logs
/// and, after the handshake, to the client in an error frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    TooManyUnauthenticated(usize),
    HandshakeRate(IpAddr),
    RegistrationRate,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooManyUnauthenticated(n) => write!(f, "{n} connections are already in their handshake"),
            Refusal::HandshakeRate(ip) => write!(f, "too many handshakes from {ip}"),
            Refusal::RegistrationRate => write!(f, "too many new clients at once; try again later"),
        }
    }
}

pub struct Admission {
    limits: AdmissionLimits,
    unauthenticated: Arc<AtomicUsize>,
    handshakes: Mutex<RateLimiter<IpAddr>>,
    registrations: Mutex<RateLimiter<()>>,
}

/// Held while a connection is unauthenticated; dropping it frees the slot.
pub struct Unauthenticated(Arc<AtomicUsize>);

impl Drop for Unauthenticated {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        Admission {
            limits,
            unauthenticated: Arc::default(),
            handshakes: Mutex::new(RateLimiter::new(limits.handshakes_per_source, limits.handshake_burst(), MAX_SOURCES)),
            registrations: Mutex::new(RateLimiter::new(limits.registrations_per_sec, limits.registration_burst(), 1)),
        }
    }

    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// A new connection from `source`: a slot among the unauthenticated
    /// ones, and a token of its source's handshake rate.
    pub fn admit(&self, source: IpAddr, now: Instant) -> Result<Unauthenticated, Refusal> {
        let max = self.limits.max_unauthenticated.max(1);
        let taken = self.unauthenticated.fetch_add(1, Ordering::AcqRel);
        let slot = Unauthenticated(self.unauthenticated.clone());
        if taken >= max {
            return Err(Refusal::TooManyUnauthenticated(max));
        }
        let mut rates = self.handshakes.lock().unwrap_or_else(|p| p.into_inner());
        rates.check(&source, now, false).map_err(|_| Refusal::HandshakeRate(source))?;
        Ok(slot)
    }

    /// A key the gateway has never seen wants to register.
    pub fn admit_registration(&self, now: Instant) -> Result<(), Refusal> {
        let mut rate = self.registrations.lock().unwrap_or_else(|p| p.into_inner());
        rate.check(&(), now, true).map_err(|_| Refusal::RegistrationRate)
    }
}

/// A client's stream that allows `allowance` bytes to be read until
/// [`HandshakeGate::open`] is called (the client authenticated); past the
/// allowance reads fail, so the connection ends before more is buffered.
pub struct Gated<S> {
    inner: S,
    remaining: usize,
    open: Arc<AtomicBool>,
}

/// Opens the gate of a [`Gated`] stream.
#[derive(Clone)]
pub struct HandshakeGate(Arc<AtomicBool>);

impl HandshakeGate {
    pub fn open(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl<S> Gated<S> {
    pub fn new(inner: S, allowance: usize) -> (Self, HandshakeGate) {
        let open = Arc::new(AtomicBool::new(false));
        (Gated { inner, remaining: allowance, open: open.clone() }, HandshakeGate(open))
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Gated<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.open.load(Ordering::Acquire) {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        if self.remaining == 0 {
            return Poll::Ready(Err(io::Error::other("the handshake is larger than --max-handshake-bytes")));
        }
        // Read no more than the allowance left, so nothing past it is
        // taken in; through a small buffer of our own (a handshake is a few
        // hundred bytes: the copy costs nothing).
        let mut scratch = [0u8; 2048];
        let n = self.remaining.min(buf.remaining()).min(scratch.len());
        let mut limited = ReadBuf::new(&mut scratch[..n]);
        let result = Pin::new(&mut self.inner).poll_read(cx, &mut limited);
        if let Poll::Ready(Ok(())) = result {
            let got = limited.filled();
            buf.put_slice(got);
            self.remaining -= got.len();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gated<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
