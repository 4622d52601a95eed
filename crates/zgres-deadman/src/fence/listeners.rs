//! Who a change of the fence clock wakes: the fence thread (parked towards the deadline), the
//! task that feeds the keeper, and the heartbeat.

use std::sync::OnceLock;
use std::thread::Thread;

use tokio::sync::Notify;

/// The fence clock's listeners.
#[derive(Debug, Default)]
pub(super) struct Listeners {
    /// The fence thread, woken when the deadline may have come closer.
    fence_thread: OnceLock<Thread>,
    /// Signalled on every change, for the task that feeds the keeper.
    changed: Notify,
    /// Signalled on every confirmation, for the heartbeat (a second consumer: `Notify` wakes
    /// one).
    confirmed: Notify,
}

impl Listeners {
    /// Registers the calling thread as the fence thread (the first caller only).
    pub(super) fn register_fence_thread(&self) {
        let _ = self.fence_thread.set(std::thread::current());
    }

    /// Wakes the fence thread and the keeper feeder: something they act on changed.
    pub(super) fn wake_all(&self) {
        if let Some(thread) = self.fence_thread.get() {
            thread.unpark();
        }
        self.changed.notify_one();
    }

    /// Wakes the keeper feeder only (nothing the fence thread sleeps towards came closer).
    pub(super) fn notify_changed(&self) {
        self.changed.notify_one();
    }

    /// Wakes the heartbeat.
    pub(super) fn notify_confirmed(&self) {
        self.confirmed.notify_one();
    }

    /// Resolves after a change (or at once if one came since the last call). Cancel-safe.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Resolves after a confirmation (or at once if one came since the last call).
    /// Cancel-safe.
    pub(super) async fn confirmed(&self) {
        self.confirmed.notified().await;
    }
}
