//! An answer cut after its first event: continued on another endpoint
//! through the route's [`Continuer`], or ended with the cut's own error.

use tokio::time::Instant;

use super::{Answer, Cut, Downstream, Phase, SseBody};
use crate::dialect::continuation::{self, Splice};
use crate::sse::Scanner;
use crate::telemetry::Exchange;

impl SseBody {
    /// Continues a cut answer when the route does and it can be; ends the
    /// stream with `cut`'s error event otherwise.
    pub(super) fn end_or_continue(&mut self, x: &mut Exchange, cut: Cut) {
        let reason = cut.reason;
        self.cut = Some(cut);
        if self.try_continue(x, reason) {
            return;
        }
        self.end_cut(x);
    }

    /// Ends the stream the way its cut (or a failed continuation's) says.
    pub(super) fn end_cut(&mut self, x: &mut Exchange) {
        let Some(cut) = self.cut.take() else {
            self.phase = Phase::Done;
            return;
        };
        if let Some(ending) = cut.ending {
            x.set_ending(ending);
        }
        if let Some(event) = cut.event {
            tracing::warn!("stream ended with the upstream's error event");
            x.finish(cut.outcome);
            self.observer.relay_event(event, &mut self.queued);
            self.phase = Phase::Done;
            return;
        }
        self.fail(x, cut.outcome, cut.status, &cut.code, &cut.message);
    }

    /// Asks the route's continuer for a continuation of the answer so far.
    /// `false` (nothing changed) when the route has none, or the answer
    /// cannot be continued, or no endpoint can take it.
    pub(super) fn try_continue(&mut self, x: &mut Exchange, reason: &'static str) -> bool {
        let Some(continuer) = self.continuer.as_mut() else {
            return false;
        };
        let Some(raw) = self.observer.recorded() else {
            tracing::info!("answer cut ({reason}), not continued: too long to keep");
            return false;
        };
        let delivered = match continuation::delivered(self.dialect, raw) {
            Ok(d) => d,
            Err(why) => {
                tracing::info!("answer cut ({reason}), not continued: {why}");
                return false;
            }
        };
        let from = x.endpoint().cloned();
        let Some(pending) = continuer.start(&delivered, reason, from.clone()) else {
            tracing::info!("answer cut ({reason}), not continued: no endpoint or attempt left");
            return false;
        };
        tracing::info!(
            reason,
            tokens = delivered.tokens,
            "answer cut after its first event; continuing it on another endpoint"
        );
        x.begin_continuation(from, reason, delivered.tokens);
        self.observer.begin_splice(Splice::new(&delivered));
        self.scanner = Scanner::new(self.max_event);
        self.ended = false;
        // Drops the cut upstream's body and lease.
        self.phase = Phase::Continuing(pending);
        self.last_upstream = Instant::now();
        true
    }

    /// The answer of the endpoint asked to continue.
    pub(super) fn on_continuation(&mut self, answer: Answer, x: &mut Exchange) {
        let Answer {
            result,
            attempts,
            model,
            read_timeout,
        } = answer;
        let continues = result.as_ref().is_ok_and(|sent| {
            sent.response.status().is_success()
                && crate::dialect::is_event_stream(sent.response.headers())
        });
        x.end_continuation(attempts, continues);
        if continues {
            if let Some(m) = &model {
                x.set_model(m);
            }
        }
        match result {
            Ok(sent)
                if sent.response.status().is_success()
                    && crate::dialect::is_event_stream(sent.response.headers()) =>
            {
                self.cut = None;
                let heartbeat = match &self.downstream {
                    Downstream::Client { heartbeat, .. } => Some(heartbeat.interval()),
                    Downstream::Producer { .. } => None,
                };
                self.set_read_timeout(read_timeout, heartbeat);
                self.last_upstream = Instant::now();
                let (_, body) = sent.response.into_parts();
                self.phase = Phase::Streaming {
                    body,
                    lease: sent.lease,
                };
            }
            Ok(sent) => {
                let status = sent.response.status();
                tracing::warn!("continuation answered {status}; the cut stands");
                self.end_cut(x);
            }
            Err(e) => {
                tracing::warn!("continuation failed: {e}; the cut stands");
                self.end_cut(x);
            }
        }
    }
}
