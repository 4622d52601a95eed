//! A server loop on a thread and runtime of its own, stopped and joined when dropped: a test
//! that blocks its own thread, or a process it SIGSTOPs, can never stall it.

use std::future::Future;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// A running loop. Dropping it stops the loop (every task it spawned is aborted with its
/// runtime) and joins the thread.
#[derive(Debug)]
pub struct OwnThread {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OwnThread {
    /// Runs the future `serve` makes on a new thread named `name`, with a current-thread
    /// runtime; `serve` is called there, so it may register sockets with that runtime.
    ///
    /// # Errors
    /// When the runtime or the thread cannot be created.
    pub fn spawn<F, Fut>(name: String, serve: F) -> std::io::Result<OwnThread>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (shutdown, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    () = serve() => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime here aborts every task and closes its sockets.
        })?;
        Ok(OwnThread {
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }
}

impl Drop for OwnThread {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
