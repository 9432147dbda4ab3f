//! Deadline-bounded polling for conditions that have no notification to await.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often `wait_until` re-checks its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `f` every 50 ms until it returns `Ok(Some(value))` and returns that value.
///
/// `Ok(None)` and `Err(_)` both mean "not yet" (the condition may depend on a process that is
/// still starting); on timeout the error names `what` and carries the last error seen. A single
/// call of `f` that hangs is cut off by the same deadline.
pub async fn wait_until<F, Fut, T>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error: Option<anyhow::Error> = None;
    let mut attempts = 0usize;
    loop {
        attempts += 1;
        match tokio::time::timeout_at(deadline, f()).await {
            Ok(Ok(Some(value))) => return Ok(value),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => last_error = Some(e),
            Err(_elapsed) => break,
        }
        if Instant::now() + POLL_INTERVAL > deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let message = format!("timed out after {timeout:?} ({attempts} attempts) waiting for {what}");
    Err(match last_error {
        Some(e) => e.context(message),
        None => anyhow::anyhow!(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_some() -> anyhow::Result<()> {
        let mut calls = 0;
        let value = wait_until("third call", Duration::from_secs(5), || {
            calls += 1;
            let n = calls;
            async move {
                if n < 2 {
                    anyhow::bail!("not yet");
                }
                Ok((n >= 3).then_some(n))
            }
        })
        .await?;
        assert_eq!(value, 3);
        Ok(())
    }

    #[tokio::test]
    async fn times_out_with_what_and_last_error() {
        let started = std::time::Instant::now();
        let result: anyhow::Result<()> =
            wait_until("the impossible", Duration::from_millis(200), || async {
                anyhow::bail!("still broken")
            })
            .await;
        let message = format!("{:#}", result.expect_err("must time out"));
        assert!(message.contains("the impossible"), "{message}");
        assert!(message.contains("still broken"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_hanging_check_is_cut_off() {
        let started = std::time::Instant::now();
        let result: anyhow::Result<()> =
            wait_until("a hanging check", Duration::from_millis(200), || {
                std::future::pending::<anyhow::Result<Option<()>>>()
            })
            .await;
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
