//! Real-time delivery: the hub (per-inbox topics, events encoded once, bounded
//! per-subscriber queues), the publisher that feeds it from the store in id order, resume
//! from an event id, and the bookkeeping every streaming front end shares (connection
//! limits and counts, shutdown). The front ends themselves (WebSocket, SSE, Socket.IO,
//! long poll) live in `http`, the only module that knows HTTP.

pub mod connections;
pub mod hub;
pub mod publisher;
pub mod resume;
pub mod session;

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use connections::{ConnectionGuard, Connections, Refused, Transport};
pub use hub::{Encoder, Event, Hub};
pub use resume::{Next, Subscription};
pub use session::{Session, TooMany};

use crate::config::RealtimeConfig;

/// The hub and what every streaming connection shares.
pub struct Realtime {
    pub hub: Arc<Hub>,
    pub connections: Arc<Connections>,
    pub config: RealtimeConfig,
    /// Cancelled when the server starts shutting down: every stream tells its client to
    /// reconnect later and ends.
    closing: CancellationToken,
    /// Connection tasks the HTTP server does not track (upgraded WebSockets), so shutdown
    /// can wait for their goodbyes.
    streams: TaskTracker,
}

impl Realtime {
    /// `latest`: the newest stored message id at start.
    pub fn new(latest: u64, config: RealtimeConfig, encode: Encoder) -> Self {
        Self {
            hub: Arc::new(Hub::new(latest, config.queue, encode)),
            connections: Arc::new(Connections::new(
                config.max_connections_per_user,
                config.max_connections_per_ip,
            )),
            config,
            closing: CancellationToken::new(),
            streams: TaskTracker::new(),
        }
    }

    /// Completes when shutdown starts.
    pub fn closing(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.closing.clone().cancelled_owned()
    }

    pub fn is_closing(&self) -> bool {
        self.closing.is_cancelled()
    }

    /// Runs a connection task that shutdown waits for.
    pub fn track<F>(&self, task: F) -> impl Future<Output = F::Output> + Send + use<F>
    where
        F: Future + Send + 'static,
    {
        self.streams.track_future(task)
    }

    /// Tells every stream to say goodbye, then waits for them (bounded by the caller).
    pub async fn close(&self) {
        self.closing.cancel();
        self.streams.close();
        self.streams.wait().await;
    }
}
