//! Keeping a non-streaming JSON answer's frames (shared `Bytes`, no copy
//! while forwarding) to read its usage once it is complete.
//!
//! Only answers up to `usage.max_body_size` are kept; a larger one stops
//! being kept at the cap and its usage counts as missing. The one copy
//! (joining the frames) and the parse happen at the end, and only when the
//! body mentions `"usage"` at all.

use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use memchr::memmem::Finder;

use crate::dialect::Dialect;
use crate::usage::{Usage, from_body};

/// Built once: building a searcher costs more than one search of a small
/// answer.
static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));

pub(crate) struct UsageCapture {
    dialect: Dialect,
    cap: u64,
    frames: Vec<Bytes>,
    len: u64,
    over: bool,
}

impl UsageCapture {
    pub(crate) fn new(dialect: Dialect, cap: u64) -> Self {
        Self {
            dialect,
            cap,
            frames: Vec::new(),
            len: 0,
            over: false,
        }
    }

    pub(crate) fn push(&mut self, data: &Bytes) {
        if self.over {
            return;
        }
        self.len += data.len() as u64;
        if self.len > self.cap {
            self.over = true;
            self.frames = Vec::new();
            return;
        }
        self.frames.push(data.clone());
    }

    /// Usage and model of the complete body, if it reported usage.
    pub(crate) fn finish(&mut self) -> Option<(Usage, Option<String>)> {
        if self.over {
            return None;
        }
        let frames = std::mem::take(&mut self.frames);
        let body = match frames.len() {
            0 => return None,
            1 => frames.into_iter().next().unwrap_or_default(),
            _ => {
                let mut joined = BytesMut::with_capacity(usize::try_from(self.len).unwrap_or(0));
                for f in &frames {
                    joined.extend_from_slice(f);
                }
                joined.freeze()
            }
        };
        USAGE_KEY.find(&body)?;
        let (usage, model) = from_body(self.dialect, &body);
        usage.map(|u| (u, model))
    }
}
