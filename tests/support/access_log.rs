//! The relay's access log, captured: lines looked for by what they say
//! (waiting a bounded time), or taken in order.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The access log of an in-process relay (see
/// [`start_logged`](super::start_logged)).
pub struct CapturedLog {
    rx: Receiver<String>,
    /// Lines received and not yet taken, oldest first.
    seen: Vec<String>,
}

impl CapturedLog {
    pub(super) fn new(rx: Receiver<String>) -> Self {
        Self {
            rx,
            seen: Vec::new(),
        }
    }

    /// Takes the first line (not yet taken) that satisfies `pred`, waiting
    /// up to 5 s; a line that is not JSON is an error.
    pub async fn find(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.seen.extend(self.rx.try_iter());
            let parsed = self
                .seen
                .iter()
                .map(|line| {
                    serde_json::from_str::<Value>(line)
                        .map_err(|e| format!("access-log line is not JSON ({e}): {line}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(i) = parsed.iter().position(&pred) {
                self.seen.remove(i);
                return Ok(parsed.into_iter().nth(i).unwrap());
            }
            if Instant::now() > deadline {
                return Err(format!("no access-log line {what}; lines: {:?}", self.seen));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Takes the line for `path` whose outcome is `outcome`.
    pub async fn outcome(&mut self, path: &str, outcome: &str) -> Result<Value, String> {
        self.find(&format!("for {path} with outcome {outcome}"), |v| {
            v["path"] == path && v["outcome"] == outcome
        })
        .await
    }

    /// Takes the next line in order, as written; waits (blocking) up to 10 s.
    pub fn next_line(&mut self) -> String {
        if !self.seen.is_empty() {
            return self.seen.remove(0);
        }
        self.rx
            .recv_timeout(Duration::from_secs(10))
            .expect("an access-log line")
    }

    /// [`next_line`](Self::next_line), parsed.
    pub fn next_json(&mut self) -> Value {
        let line = self.next_line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }
}
