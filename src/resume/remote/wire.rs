//! The messages replicas exchange about resumable streams, as bus payloads.
//!
//! A message is one ASCII line of space-separated fields, ending in `\n`;
//! `Data` carries the stream's bytes after it, as they are. The first
//! three fields are always the kind, the sender's replica id (8 hex
//! digits) and the resumer's slot (a number the resumer picked, naming
//! one reconnect):
//!
//! ```text
//! resumer ──▶ producer   Q <from> <slot> <token>                    route and dialect?
//!                        R <from> <slot> <token> <after|-> <route> <key hex|->   attach
//!                        C <from> <slot>                            the reconnect went
//! producer ──▶ resumer   I <from> <slot> <route> <dialect>          answer to Q
//!                        A <from> <slot> <dialect> <max_bytes>      attached
//!                        F <from> <slot> <refusal...>               refused (Q or R)
//!                        D <from> <slot>\n<bytes>                   events
//!                        H <from> <slot>                            alive, nothing new
//!                        E <from> <slot> <ok|err>                   the stream ended
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::cluster::bus::ReplicaId;
use crate::dialect::Dialect;
use crate::resume::hub::{Gone, ResumeError};
use crate::resume::token::Token;

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Msg {
    Query {
        token: Token,
    },
    Attach {
        token: Token,
        after: Option<u64>,
        route: usize,
        key: Option<String>,
    },
    Cancel,
    Info {
        route: usize,
        dialect: Dialect,
    },
    Accepted {
        dialect: Dialect,
        max_bytes: u64,
    },
    Refused(ResumeError),
    Data(Bytes),
    Beat,
    End {
        ok: bool,
    },
}

/// A message with its envelope.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Envelope {
    pub(super) from: ReplicaId,
    pub(super) slot: u64,
    pub(super) msg: Msg,
}

impl Envelope {
    pub(super) fn encode(&self) -> Bytes {
        let mut line = match &self.msg {
            Msg::Query { .. } => "Q",
            Msg::Attach { .. } => "R",
            Msg::Cancel => "C",
            Msg::Info { .. } => "I",
            Msg::Accepted { .. } => "A",
            Msg::Refused(_) => "F",
            Msg::Data(_) => "D",
            Msg::Beat => "H",
            Msg::End { .. } => "E",
        }
        .to_owned();
        line += &format!(" {:08x} {}", self.from, self.slot);
        match &self.msg {
            Msg::Query { token } => line += &format!(" {token}"),
            Msg::Attach {
                token,
                after,
                route,
                key,
            } => {
                let after = after.map_or_else(|| "-".to_owned(), |n| n.to_string());
                let key = key.as_deref().map_or_else(|| "-".to_owned(), hex);
                line += &format!(" {token} {after} {route} {key}");
            }
            Msg::Info { route, dialect } => {
                line += &format!(" {route} {}", dialect_code(*dialect));
            }
            Msg::Accepted { dialect, max_bytes } => {
                line += &format!(" {} {max_bytes}", dialect_code(*dialect));
            }
            Msg::Refused(e) => line += &refusal(*e),
            Msg::End { ok } => line += if *ok { " ok" } else { " err" },
            Msg::Cancel | Msg::Data(_) | Msg::Beat => {}
        }
        line.push('\n');
        let data = match &self.msg {
            Msg::Data(b) => b.as_ref(),
            _ => &[],
        };
        let mut out = BytesMut::with_capacity(line.len() + data.len());
        out.put_slice(line.as_bytes());
        out.put_slice(data);
        out.freeze()
    }

    /// `None` for anything that is not a well-formed message.
    pub(super) fn decode(mut payload: Bytes) -> Option<Self> {
        let nl = memchr::memchr(b'\n', &payload)?;
        let head = payload.split_to(nl + 1);
        let line = std::str::from_utf8(&head[..nl]).ok()?;
        let mut f = line.split(' ');
        let kind = f.next()?;
        let from = u32::from_str_radix(f.next()?, 16).ok()?;
        let slot = f.next()?.parse().ok()?;
        let msg = match kind {
            "Q" => Msg::Query {
                token: Token::parse(f.next()?)?,
            },
            "R" => Msg::Attach {
                token: Token::parse(f.next()?)?,
                after: match f.next()? {
                    "-" => None,
                    n => Some(n.parse().ok()?),
                },
                route: f.next()?.parse().ok()?,
                key: match f.next()? {
                    "-" => None,
                    k => Some(unhex(k)?),
                },
            },
            "C" => Msg::Cancel,
            "I" => Msg::Info {
                route: f.next()?.parse().ok()?,
                dialect: dialect_of(f.next()?)?,
            },
            "A" => Msg::Accepted {
                dialect: dialect_of(f.next()?)?,
                max_bytes: f.next()?.parse().ok()?,
            },
            "F" => Msg::Refused(parse_refusal(&mut f)?),
            "D" => Msg::Data(payload),
            "H" => Msg::Beat,
            "E" => Msg::End {
                ok: match f.next()? {
                    "ok" => true,
                    "err" => false,
                    _ => return None,
                },
            },
            _ => return None,
        };
        if f.next().is_some() {
            return None;
        }
        Some(Self { from, slot, msg })
    }
}

fn refusal(e: ResumeError) -> String {
    match e {
        ResumeError::Unknown => " unknown".to_owned(),
        ResumeError::Gone(Gone::Expired) => " expired".to_owned(),
        ResumeError::Gone(Gone::Finished) => " finished".to_owned(),
        ResumeError::Gone(Gone::Stopped) => " stopped".to_owned(),
        ResumeError::Overflow { after, oldest } => format!(" overflow {after} {oldest}"),
        ResumeError::Ahead { after, sent } => format!(" ahead {after} {sent}"),
        // A producer never answers this (it is the resumer's own verdict).
        ResumeError::Unreachable => " unknown".to_owned(),
    }
}

fn parse_refusal<'a>(f: &mut impl Iterator<Item = &'a str>) -> Option<ResumeError> {
    let kind = num_kind(f.next()?)?;
    let mut num = || f.next()?.parse::<u64>().ok();
    Some(match kind {
        Kind::Unknown => ResumeError::Unknown,
        Kind::Gone(g) => ResumeError::Gone(g),
        Kind::Overflow => ResumeError::Overflow {
            after: num()?,
            oldest: num()?,
        },
        Kind::Ahead => ResumeError::Ahead {
            after: num()?,
            sent: num()?,
        },
    })
}

enum Kind {
    Unknown,
    Gone(Gone),
    Overflow,
    Ahead,
}

fn num_kind(s: &str) -> Option<Kind> {
    Some(match s {
        "unknown" => Kind::Unknown,
        "expired" => Kind::Gone(Gone::Expired),
        "finished" => Kind::Gone(Gone::Finished),
        "stopped" => Kind::Gone(Gone::Stopped),
        "overflow" => Kind::Overflow,
        "ahead" => Kind::Ahead,
        _ => return None,
    })
}

fn dialect_code(d: Dialect) -> &'static str {
    match d {
        Dialect::OpenAiChat => "chat",
        Dialect::OpenAiResponses => "responses",
        Dialect::Anthropic => "anthropic",
        Dialect::Generic => "generic",
    }
}

fn dialect_of(s: &str) -> Option<Dialect> {
    Some(match s {
        "chat" => Dialect::OpenAiChat,
        "responses" => Dialect::OpenAiResponses,
        "anthropic" => Dialect::Anthropic,
        "generic" => Dialect::Generic,
        _ => return None,
    })
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(msg: Msg) {
        let e = Envelope {
            from: 0xdead_beef,
            slot: 42,
            msg,
        };
        assert_eq!(Envelope::decode(e.encode()).as_ref(), Some(&e));
    }

    #[test]
    fn every_message_survives_the_wire() {
        let token = Token::random_on(7).expect("random");
        round_trip(Msg::Query { token });
        round_trip(Msg::Attach {
            token,
            after: Some(12),
            route: 3,
            key: Some("team a\n".to_owned()),
        });
        round_trip(Msg::Attach {
            token,
            after: None,
            route: 0,
            key: None,
        });
        round_trip(Msg::Cancel);
        round_trip(Msg::Info {
            route: 1,
            dialect: Dialect::OpenAiResponses,
        });
        round_trip(Msg::Accepted {
            dialect: Dialect::Anthropic,
            max_bytes: 1 << 20,
        });
        for e in [
            ResumeError::Unknown,
            ResumeError::Gone(Gone::Expired),
            ResumeError::Gone(Gone::Finished),
            ResumeError::Gone(Gone::Stopped),
            ResumeError::Overflow {
                after: 3,
                oldest: 9,
            },
            ResumeError::Ahead { after: 9, sent: 4 },
        ] {
            round_trip(Msg::Refused(e));
        }
        round_trip(Msg::Data(Bytes::from_static(
            b"id: x:1\ndata: a\n\nid: x:2\n",
        )));
        round_trip(Msg::Data(Bytes::new()));
        round_trip(Msg::Beat);
        round_trip(Msg::End { ok: true });
        round_trip(Msg::End { ok: false });
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            &b""[..],
            b"Q 1 2",
            b"Q zz 1 00000000000000000000000000000000\n",
            b"X 00000001 1\n",
            b"E 00000001 1 maybe\n",
            b"H 00000001 1 extra\n",
            b"R 00000001 1 00000000000000000000000000000000 - 0 abc\n",
        ] {
            assert_eq!(Envelope::decode(Bytes::from_static(bad)), None, "{bad:?}");
        }
    }
}
