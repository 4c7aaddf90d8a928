//! A one-shot, clonable shutdown signal.
//!
//! The relay has two phases of stopping: *drain* (stop accepting, let
//! in-flight work finish) and *stop* (end whatever is left). Each phase is a
//! [`Shutdown`]; background tasks select on [`Shutdown::wait`] so none of
//! them outlives the process's orderly exit.

use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: std::sync::Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Self {
            tx: std::sync::Arc::new(tx),
            rx,
        }
    }

    /// Fire the signal; idempotent.
    pub fn signal(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_signaled(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once the signal has fired (immediately if it already has).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means every sender is gone, which cannot happen while
        // `self` holds one; treat it as fired either way.
        let _ = rx.wait_for(|fired| *fired).await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}
