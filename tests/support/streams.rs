//! Canned streaming upstreams: a finite SSE stream paced by a gap, and an
//! endless one that records when its reader went away ([`Stops`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    Options, Recorded, Upstream, channel_body, json_response, sse_events, sse_response,
    stream_frames,
};

impl Upstream {
    /// Answers every request with the `n` events of [`sse_events`], one
    /// frame each, `gap` apart.
    pub async fn streaming(opts: impl Into<Options>, n: usize, gap: Duration) -> Upstream {
        Upstream::start(opts, move |_| async move {
            sse_response(stream_frames(sse_events(n), gap, None))
        })
        .await
    }

    /// Answers `/ok` with `200 {"ok":true}` and every other request with an
    /// endless event stream (`data: {"tick":N}`, one per `gap`); `stops`
    /// records each stream whose body channel the upstream's HTTP stack
    /// closed (its connection closed or its stream reset).
    pub async fn endless(opts: impl Into<Options>, gap: Duration, stops: Arc<Stops>) -> Upstream {
        Upstream::start(opts, move |req: Recorded| {
            let stops = stops.clone();
            async move {
                if req.target == "/ok" {
                    return json_response(200, r#"{"ok":true}"#);
                }
                let (tx, body) = channel_body();
                tokio::spawn(async move {
                    for i in 0u64.. {
                        let ev = format!("data: {{\"tick\":{i}}}\n\n");
                        if tx.send(Ok(ev.into())).await.is_err() {
                            stops.stopped();
                            return;
                        }
                        tokio::time::sleep(gap).await;
                    }
                });
                sse_response(body)
            }
        })
        .await
    }
}

/// When an upstream stream noticed its reader was gone, and how often.
#[derive(Default)]
pub struct Stops {
    count: AtomicUsize,
    last: Mutex<Option<Instant>>,
}

impl Stops {
    pub fn stopped(&self) {
        *self.last.lock().unwrap() = Some(Instant::now());
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    /// Streams stopped so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Option<Instant> {
        *self.last.lock().unwrap()
    }

    /// Waits (up to `limit`) for `n` stops; the last one's instant.
    pub async fn wait(&self, n: usize, limit: Duration) -> Result<Instant, String> {
        let deadline = Instant::now() + limit;
        loop {
            if self.count() >= n {
                return Ok(self.last().unwrap());
            }
            ensure!(
                Instant::now() < deadline,
                "the upstream saw {} of {n} stream(s) cancelled within {limit:?}",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
