//! Resume tokens and the `Last-Event-ID` values built from them.
//!
//! A token is 128 bits, written as 32 lowercase hex digits. It is the only
//! capability a reconnect needs besides the route's own auth, so it must
//! not be guessable: all 128 bits are random on a single relay. In cluster
//! mode the first 32 are the producing replica's id (a reconnect on
//! another replica knows where to ask without a lookup) and 96 are random.
//! Events carry `id: <token>:<seq>`, `seq` counting the stream's events
//! from 1.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token([u8; 16]);

impl Token {
    /// A fresh random token; `None` if the system's generator failed (the
    /// stream is then served without resumption).
    pub fn random() -> Option<Self> {
        let mut bytes = [0u8; 16];
        SystemRandom::new().fill(&mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// A fresh token naming `replica` as its producer (cluster mode).
    pub(crate) fn random_on(replica: u32) -> Option<Self> {
        let mut t = Self::random()?;
        t.0[..4].copy_from_slice(&replica.to_be_bytes());
        Some(t)
    }

    /// The producing replica's id, in cluster mode (the first 32 bits).
    pub(crate) fn replica(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    /// Reads 32 hex digits (either case).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.as_bytes();
        if s.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (out, pair) in bytes.iter_mut().zip(s.chunks_exact(2)) {
            *out = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(Self(bytes))
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Enough to tell streams apart in diagnostics, not enough to resume.
        write!(f, "Token({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

/// A `Last-Event-ID` this relay wrote: `<token>:<seq>`. `None` for any
/// other value (an upstream's own ids pass through untouched).
pub(crate) fn parse_last_event_id(value: &[u8]) -> Option<(Token, u64)> {
    let s = std::str::from_utf8(value).ok()?.trim();
    let (token, seq) = s.split_once(':')?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((Token::parse(token)?, seq.parse().ok()?))
}
