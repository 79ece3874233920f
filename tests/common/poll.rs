//! Waiting for a condition instead of sleeping for a guessed time.

use std::time::{Duration, Instant};

/// Waits until `condition` holds, checking at once and then at growing intervals
/// (10 ms up to 200 ms, so quick conditions are seen quickly and slow ones are not
/// hammered). Panics naming `what` if it does not hold within `timeout`: the
/// timeout bounds a failing test, it is not a performance requirement.
pub async fn eventually(what: &str, timeout: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    while !condition().await {
        assert!(
            Instant::now() < until,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
