//! Shared plumbing for child processes: kill-on-drop guard, blocking helper and log tails.

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Owns a child process and kills (SIGKILL) and reaps it when dropped.
///
/// `std::process::Child` does neither on drop, and `tokio::process::Child::kill_on_drop` does not
/// reap synchronously; waiting here guarantees the process is really gone (no zombie, port freed)
/// once the handle is dropped, which tests rely on.
pub(crate) struct ChildGuard {
    child: Child,
    /// Set once the exit status has been collected so we neither kill a reused pid nor wait twice.
    exited: Option<ExitStatus>,
}

impl ChildGuard {
    pub(crate) fn new(child: Child) -> Self {
        Self { child, exited: None }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has exited, without blocking.
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            // An error here means the child was already reaped; treat it as still unknown.
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// SIGKILL and reap.
    pub(crate) fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.try_wait() {
            return Ok(status);
        }
        // `kill` fails only if the process is already gone (and reaped), which `wait` then reports.
        let _ = self.child.kill();
        let status = self.child.wait()?;
        self.exited = Some(status);
        Ok(status)
    }

    /// SIGTERM, then wait up to `timeout` for the process to exit; SIGKILL if it does not.
    ///
    /// There is no libc dependency (and `unsafe` is forbidden), so the signal is sent with the
    /// `kill` utility. Waiting polls `try_wait`, bounded by the deadline.
    pub(crate) fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.try_wait() {
            return Ok(status);
        }
        let pid = self.pid();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map_err(|e| anyhow::anyhow!("running `kill -TERM {pid}`: {e}"))?;
        if !sent.success() {
            // Most likely the process exited in between; the wait below tells.
            if let Some(status) = self.try_wait() {
                return Ok(status);
            }
            anyhow::bail!("`kill -TERM {pid}` failed: {sent}");
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.kill();
        anyhow::bail!("process {pid} did not exit within {timeout:?} after SIGTERM; killed it")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Runs a blocking closure from sync or async code.
///
/// On a multi-threaded tokio runtime `block_in_place` lets the runtime move other tasks (e.g. a
/// [`crate::Receiver`]) off this worker while we block; on a current-thread runtime that is not
/// possible (it would panic), so we just block, which only delays other tasks briefly.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Runs a future to completion from synchronous code, inside a tokio runtime or not: on a
/// multi-threaded runtime in place (see [`blocking`]), otherwise on a runtime of its own in
/// another thread (a current-thread runtime cannot block on itself).
pub(crate) fn block_on<F>(future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        _ => std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map(|runtime| runtime.block_on(future))
                })
                .join()
        })
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}")),
    }
}

/// The last `lines` lines of a log file, or a note why it could not be read.
pub(crate) fn file_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// The workspace root: this crate lives in `<root>/tests`.
/// A tool the tests run: `$<env_var>`, else `<workspace>/.tools/bin/<name>` (installed by
/// `make tools`), else `<name>` from `PATH`.
pub(crate) fn tool_binary(env_var: &str, name: &str) -> std::path::PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        return path.into();
    }
    let tools = workspace_root().join(".tools/bin").join(name);
    if tools.is_file() {
        return tools;
    }
    name.into()
}

pub(crate) fn workspace_root() -> std::path::PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}
