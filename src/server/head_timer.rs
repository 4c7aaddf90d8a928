//! The [`hyper::rt::Timer`] behind HTTP/1 `header_read_timeout`.
//!
//! hyper arms the timeout with a new `Sleep` at the start of every request
//! head and drops it once the head is parsed. A new tokio timer that is due
//! before the runtime's next planned wake-up makes tokio wake its driver
//! through the eventfd: one write(2) and one extra epoll_wait per keep-alive
//! request. Here a dropped sleep goes back to a small pool still armed, and
//! the next head takes it and moves its deadline later, which tokio does
//! with one atomic update: no timer-wheel lock and no wake-up. Deadlines are
//! exact (no added slop).
//!
//! A pooled sleep keeps the waker of the connection that used it last, so
//! that connection may be polled once for nothing when it fires.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// Sleeps kept for reuse; more than there are heads being read at once
/// are simply dropped.
const POOL: usize = 256;

type TokioSleep = Pin<Box<tokio::time::Sleep>>;

#[derive(Clone, Default)]
pub(super) struct HeadTimer {
    pool: Arc<Mutex<Vec<TokioSleep>>>,
}

impl HeadTimer {
    fn take(&self) -> Option<TokioSleep> {
        self.pool.lock().ok()?.pop()
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let sleep = match self.take() {
            Some(mut s) => {
                // Later than its old deadline (the common case): tokio only
                // updates the entry's expiry.
                s.as_mut().reset(deadline.into());
                s
            }
            None => Box::pin(tokio::time::sleep_until(deadline.into())),
        };
        Box::pin(Recycled {
            sleep: Some(sleep),
            pool: self.pool.clone(),
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Recycled>() {
            Some(r) => {
                if let Some(s) = &mut r.get_mut().sleep {
                    s.as_mut().reset(new_deadline.into());
                }
            }
            None => *sleep = self.sleep_until(new_deadline),
        }
    }

    fn now(&self) -> Instant {
        // tokio's clock, so paused-time tests see the same time as the sleeps.
        tokio::time::Instant::now().into()
    }
}

/// A pooled tokio sleep; goes back to the pool when hyper drops it.
struct Recycled {
    sleep: Option<TokioSleep>,
    pool: Arc<Mutex<Vec<TokioSleep>>>,
}

impl Future for Recycled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().sleep {
            Some(s) => s.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl Sleep for Recycled {}

impl Drop for Recycled {
    fn drop(&mut self) {
        let Some(s) = self.sleep.take() else { return };
        if let Ok(mut pool) = self.pool.lock() {
            if pool.len() < POOL {
                pool.push(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_at_its_deadline_new_or_recycled() {
        let timer = HeadTimer::default();
        for round in 0..3 {
            let start = tokio::time::Instant::now();
            let s = timer.sleep(Duration::from_secs(2));
            s.await;
            assert_eq!(start.elapsed(), Duration::from_secs(2), "round {round}");
        }
        assert_eq!(timer.pool.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_recycled_sleep_moves_to_the_later_deadline() {
        let timer = HeadTimer::default();
        // Armed and dropped before it fires, as hyper does once a head is read.
        let mut first = timer.sleep(Duration::from_secs(1));
        assert!(futures_poll(&mut first).is_pending());
        drop(first);
        tokio::time::advance(Duration::from_millis(500)).await;
        let start = tokio::time::Instant::now();
        let mut second = timer.sleep(Duration::from_secs(1));
        assert!(timer.pool.lock().unwrap().is_empty(), "reused");
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(
            futures_poll(&mut second).is_pending(),
            "not at the old deadline"
        );
        second.await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_the_deadline() {
        let timer = HeadTimer::default();
        let mut s = timer.sleep(Duration::from_secs(5));
        let start = tokio::time::Instant::now();
        timer.reset(&mut s, (start + Duration::from_secs(1)).into());
        s.await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    fn futures_poll(s: &mut Pin<Box<dyn Sleep>>) -> Poll<()> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        s.as_mut().poll(&mut cx)
    }
}
