//! Keeping a slow non-streaming JSON answer alive (`json_keepalive`, opt-in).
//!
//! When the upstream has not answered within the heartbeat, the relay
//! commits `200 application/json` and writes one space per interval: JSON
//! allows whitespace before a value, so lenient parsers read the answer
//! unchanged once it arrives. The upstream's status can no longer reach the
//! client; an upstream error arrives as its JSON error body, which the
//! SDKs still recognise by its `error` member. Strict clients reject the
//! leading whitespace, which is why this is off by default.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame};

use super::capture::UsageCapture;
use super::heartbeat::Heartbeat;
use super::sse::{Answer, Pending};
use crate::dialect::Dialect;
use crate::dialect::errors::{self, ErrorInfo};
use crate::error::Error;
use crate::telemetry::{Exchange, Outcome, UsageSource};
use crate::upstream::{Body as UpstreamBody, Lease};

const SPACE: &[u8] = b" ";

enum Phase {
    Waiting(Pending),
    Relaying { body: UpstreamBody, lease: Lease },
    Done,
}

pub(crate) struct JsonWaitBody {
    phase: Phase,
    heartbeat: Heartbeat,
    dialect: Dialect,
    usage: UsageCapture,
}

impl JsonWaitBody {
    pub(crate) fn new(
        pending: Pending,
        heartbeat: Heartbeat,
        dialect: Dialect,
        usage: UsageCapture,
    ) -> Self {
        Self {
            phase: Phase::Waiting(pending),
            heartbeat,
            dialect,
            usage,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        x: &mut Exchange,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        loop {
            match &mut self.phase {
                Phase::Done => return Poll::Ready(None),
                Phase::Waiting(pending) => {
                    if let Poll::Ready(res) = pending.as_mut().poll(cx) {
                        if let Some(last) = self.on_answer(res, x) {
                            return Poll::Ready(Some(Ok(Frame::data(last))));
                        }
                        continue;
                    }
                    ready!(self.heartbeat.poll_due(cx));
                    self.heartbeat.rearm();
                    x.heartbeat();
                    x.add_bytes(SPACE.len());
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(SPACE)))));
                }
                Phase::Relaying { body, lease } => {
                    return match ready!(Pin::new(body).poll_frame(cx)) {
                        Some(Ok(frame)) => {
                            if let Some(d) = frame.data_ref() {
                                x.add_bytes(d.len());
                                self.usage.push(d);
                            }
                            Poll::Ready(Some(Ok(frame)))
                        }
                        None => {
                            lease.release();
                            if let Some((u, model)) = self.usage.finish() {
                                if let Some(m) = model {
                                    x.set_model(&m);
                                }
                                x.set_usage(u, UsageSource::Body);
                            }
                            x.finish(Outcome::Complete);
                            self.phase = Phase::Done;
                            Poll::Ready(None)
                        }
                        Some(Err(e)) => {
                            if let Some(class) = e.upstream_class() {
                                x.upstream_error(class);
                            }
                            x.finish(Outcome::UpstreamReset);
                            self.phase = Phase::Done;
                            Poll::Ready(Some(Err(e)))
                        }
                    };
                }
            }
        }
    }

    /// Starts relaying the answer, or returns the error body that ends the
    /// response when the upstream could not be reached.
    fn on_answer(&mut self, mut answer: Answer, x: &mut Exchange) -> Option<Bytes> {
        answer.record(x);
        match answer.result {
            Ok(sent) => {
                x.set_upstream_status(sent.response.status().as_u16());
                let body = sent.response.into_body();
                self.phase = Phase::Relaying {
                    body,
                    lease: sent.lease,
                };
                None
            }
            Err(e) => {
                if let Some(class) = e.upstream_class() {
                    x.upstream_error(class);
                }
                x.finish(Outcome::RelayError);
                self.phase = Phase::Done;
                let message = e.message();
                let info = ErrorInfo {
                    status: e.status(),
                    code: e.kind().code(),
                    message: &message,
                };
                Some(Bytes::from(errors::body(self.dialect, info)))
            }
        }
    }
}
