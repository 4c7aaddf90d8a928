//! The JSON access log: one line per request on stdout.
//!
//! Request tasks never write to stdout themselves. They hand finished lines
//! to a bounded channel; one writer thread drains whatever is queued and
//! writes it with a single `write_all`, so a burst costs one syscall and a
//! slow stdout (a full pipe) never stalls a stream. When the queue is full
//! the line is dropped and counted (`sse_edge_access_log_dropped_total`).
//! The thread ends, after flushing, once every sender is gone.

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

const QUEUE: usize = 16 * 1024;

/// Sender side, cloned into every request's record.
#[derive(Clone)]
pub struct AccessLog {
    tx: Option<SyncSender<String>>,
}

/// Owns the writer thread; dropping it does not stop the thread, call
/// [`AccessLogWriter::finish`] after the last sender is dropped.
pub struct AccessLogWriter {
    thread: Option<JoinHandle<()>>,
}

impl AccessLog {
    /// A log that discards everything (`log.access_log = false`).
    pub fn disabled() -> Self {
        Self { tx: None }
    }

    /// Starts the writer thread for stdout.
    pub fn stdout() -> std::io::Result<(Self, AccessLogWriter)> {
        let (tx, rx) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(&rx, &mut std::io::stdout()))?;
        Ok((
            Self { tx: Some(tx) },
            AccessLogWriter {
                thread: Some(thread),
            },
        ))
    }

    /// A log whose lines go to the returned receiver instead of stdout
    /// (tests, embedding). Lines are dropped once the queue is full.
    pub fn capture() -> (Self, Receiver<String>) {
        let (tx, rx) = sync_channel(QUEUE);
        (Self { tx: Some(tx) }, rx)
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one line (without its newline). Returns false if dropped.
    pub fn write(&self, line: String) -> bool {
        match &self.tx {
            Some(tx) => !matches!(tx.try_send(line), Err(TrySendError::Full(_))),
            None => true,
        }
    }
}

impl AccessLogWriter {
    /// Waits for queued lines to be written. Call after every [`AccessLog`]
    /// clone is dropped, or it waits for them.
    pub fn finish(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(rx: &Receiver<String>, out: &mut impl Write) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Ok(first) = rx.recv() {
        push_line(&mut buf, &first);
        while buf.len() < 1 << 20 {
            match rx.try_recv() {
                Ok(line) => push_line(&mut buf, &line),
                Err(_) => break,
            }
        }
        if out.write_all(&buf).and_then(|()| out.flush()).is_err() {
            // stdout is gone (closed pipe); keep draining so senders never block.
        }
        buf.clear();
    }
}

fn push_line(buf: &mut Vec<u8>, line: &str) {
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
}
