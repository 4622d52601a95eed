//! Waiting for a condition with a deadline, instead of sleeping.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::{HarnessError, Result};

/// How often [`until`] re-checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Re-evaluates `check` every [`POLL_INTERVAL`] until it returns `Some`, and returns that.
///
/// # Errors
/// [`HarnessError::Timeout`] naming `what` when `timeout` passes first. Cancelling the future
/// simply stops polling.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if start.elapsed() >= timeout {
            return Err(HarnessError::Timeout {
                what: what.to_owned(),
                waited: timeout,
                log: None,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
