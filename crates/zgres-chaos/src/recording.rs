//! Tasks that record into one shared list until they are stopped: the clients' writes, the
//! standbys' lag samples.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// One acknowledged write, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The write's unique id.
    pub id: i64,
    /// The port of the PostgreSQL server that committed it (`inet_server_port()`).
    pub server: u16,
    /// When the client sent it, in microseconds of the run's monotonic clock.
    pub sent_us: u64,
    /// When the client had the acknowledgement, same clock.
    pub acked_us: u64,
}

/// Running recorders of `T`.
pub struct Recording<T> {
    stop: CancellationToken,
    records: Arc<Mutex<Vec<T>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Where a recorder puts what it records.
pub type Records<T> = Arc<Mutex<Vec<T>>>;

impl<T: Clone + Send + 'static> Recording<T> {
    /// Spawns one recorder per item of `each`, made by `recorder` from the item, the shared
    /// list and the stop token (which it must watch). Call inside a tokio runtime.
    pub fn start<I, F, Fut>(each: impl IntoIterator<Item = I>, recorder: F) -> Recording<T>
    where
        F: Fn(I, Records<T>, CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let records = Arc::new(Mutex::new(Vec::new()));
        let tasks = each
            .into_iter()
            .map(|item| tokio::spawn(recorder(item, records.clone(), stop.clone())))
            .collect();
        Recording {
            stop,
            records,
            tasks,
        }
    }

    /// Stops every recorder and waits for it; returns everything recorded.
    pub async fn finish(self) -> Vec<T> {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        let records = self.records.lock().expect("no recorder panics").clone();
        records
    }
}
