//! The replicas' message bus: one Redis pub/sub channel per replica.
//!
//! Each replica draws a random id at start and subscribes to
//! `<key_prefix>rp:<id hex>`. Anything addressed to a replica is
//! `PUBLISH`ed there; what a replica receives goes, in order, to the one
//! handler the bus was started with (the resume layer, which speaks its
//! own protocol over it), called in the listening task itself: no hop
//! through a queue per message. Redis stores nothing: a message reaches the
//! replica if it is subscribed at that moment, and `PUBLISH` says how many
//! were (0: that replica is gone).
//!
//! The subscription has a connection of its own (a subscribed Redis
//! connection can do nothing else). It is made at start and again after
//! every loss, [`BACKOFF`] apart; the consumer hears [`Inbound::Lost`]
//! when it goes, since messages sent meanwhile are lost for good.

use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;

use super::{BACKOFF, Cluster, Unavailable};
use crate::shutdown::Shutdown;

/// What the bus hands its consumer.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A message published to this replica's channel.
    Message(Bytes),
    /// The subscription is gone (Redis unreachable or restarted): messages
    /// published since were not received.
    Lost,
}

/// A replica's address on the bus.
pub(crate) type ReplicaId = u32;

impl Cluster {
    /// The channel of `replica`.
    fn channel(&self, replica: ReplicaId) -> String {
        format!("{}rp:{replica:08x}", self.key_prefix)
    }

    /// Sends `message` to `replica`; how many subscribers got it (0: the
    /// replica is not subscribed, i.e. gone).
    pub(crate) async fn publish(
        &self,
        replica: ReplicaId,
        message: Bytes,
    ) -> Result<u64, Unavailable> {
        let channel = self.channel(replica);
        self.run(|mut c| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(message.as_ref())
                .query_async::<u64>(&mut c)
                .await
        })
        .await
    }

    /// Subscribes to this replica's channel (again after each loss) until
    /// `stop`, handing what arrives to `handle`, which must not block.
    pub(crate) async fn listen(
        &self,
        replica: ReplicaId,
        mut handle: impl FnMut(Inbound),
        stop: &Shutdown,
    ) {
        let channel = self.channel(replica);
        let mut first = true;
        loop {
            let connected = tokio::select! {
                () = stop.wait() => return,
                c = self.subscribe(&channel, first) => c,
            };
            match connected {
                Ok(mut messages) => {
                    first = false;
                    tracing::info!(replica = %format_args!("{replica:08x}"), "cluster: listening for other replicas");
                    loop {
                        let msg = tokio::select! {
                            () = stop.wait() => return,
                            m = std::future::poll_fn(|cx| std::pin::Pin::new(&mut messages).poll_next(cx)) => m,
                        };
                        let Some(msg) = msg else { break };
                        handle(Inbound::Message(Bytes::copy_from_slice(
                            msg.get_payload_bytes(),
                        )));
                    }
                    tracing::warn!("cluster: subscription to the replicas' bus lost");
                    handle(Inbound::Lost);
                }
                Err(e) => tracing::debug!("cluster: cannot subscribe to the replicas' bus: {e}"),
            }
            tokio::select! {
                () = stop.wait() => return,
                () = tokio::time::sleep(BACKOFF) => {}
            }
        }
    }

    /// A subscribed connection, within `connect_timeout` per step. On the
    /// first subscription, warns when another subscriber has this channel
    /// already (two replicas drew the same random id).
    async fn subscribe(
        &self,
        channel: &str,
        first: bool,
    ) -> Result<redis::aio::PubSubStream, String> {
        let limit = self.connect_timeout;
        if first {
            let taken = self
                .run(|mut c| {
                    let channel = channel.to_owned();
                    async move {
                        redis::cmd("PUBSUB")
                            .arg("NUMSUB")
                            .arg(channel)
                            .query_async::<(String, u64)>(&mut c)
                            .await
                    }
                })
                .await;
            if let Ok((_, n)) = taken {
                if n > 0 {
                    tracing::error!(
                        channel,
                        "cluster: another replica listens on this replica's channel (random id collision); \
                         restart this replica to draw a new id"
                    );
                }
            }
        }
        let pubsub = within(limit, self.client.get_async_pubsub()).await?;
        let (mut sink, stream) = pubsub.split();
        within(limit, sink.subscribe(channel)).await?;
        Ok(stream)
    }
}

async fn within<T>(
    limit: Duration,
    f: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect_timeout passed".to_owned()),
    }
}
