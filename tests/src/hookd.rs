//! The real `hookd` binary as a child process (`control` or `dispatcher`), killed on drop.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tempfile::TempDir;

use crate::auth::{DISPATCHER_TOKEN, OTHER_OWNER_TOKEN, OTHER_TENANT, OWNER_TOKEN, TENANT};
use crate::process::{ChildGuard, blocking, file_tail};

/// How long `start` waits for the ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `terminate` waits for a graceful exit.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);
/// Log lines shown in errors and when a test panics.
const TAIL_LINES: usize = 40;

/// Which `hookd` subcommand to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Control,
    Dispatcher,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Control => "control",
            Role::Dispatcher => "dispatcher",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `hookd` binary: `$HOOKD_BIN`, else the `hookd` in the cargo target directory this test
/// (or binary) was built into, found by walking up from the current executable
/// (`<target>/debug/deps/<test>` or `<target>/debug/<bin>`).
pub fn hookd_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("HOOKD_BIN") {
        let path = PathBuf::from(path);
        anyhow::ensure!(
            is_executable(&path),
            "hookd binary not found at {} (from HOOKD_BIN)",
            path.display()
        );
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating the current executable")?;
    let exe_dir = exe.parent().unwrap_or(Path::new("."));
    if let Some(found) =
        exe_dir.ancestors().map(|dir| dir.join("hookd")).find(|candidate| is_executable(candidate))
    {
        return Ok(found);
    }
    // Name the place where `cargo build -p hookd` would have put it.
    let expected_dir = if exe_dir.file_name().is_some_and(|name| name == "deps") {
        exe_dir.parent().unwrap_or(exe_dir)
    } else {
        exe_dir
    };
    anyhow::bail!(
        "hookd binary not found at {}, run `cargo build -p hookd` (or set HOOKD_BIN)",
        expected_dir.join("hookd").display()
    )
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    // `<workspace>/crates/hookd` is a directory, hence the file check.
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The key test control planes seal secrets with (base64 of 32 bytes; not for production).
pub const TEST_ENCRYPTION_KEY: &str = "aG9va2QtdGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZiE=";
/// The egress allow-list of every process the runner starts: loopback only, where the
/// receivers are. Tests of the egress policy replace it with `HOOKD_ALLOW_CIDRS` (the
/// environment overrides the file).
pub const LOOPBACK_ALLOW_CIDRS: &str = r#"allow_cidrs = ["127.0.0.0/8", "::1/128"]"#;

/// Config for `hookd control`: loopback egress, the test encryption key, the dispatcher token
/// and an owner token for each of the two test tenants (an inline table, so `key = value`
/// lines appended later stay top-level). Append more `key = value` lines as needed.
pub fn control_config(nats_url: &str, database_path: &Path) -> String {
    let database_url = format!("sqlite://{}?mode=rwc", database_path.display());
    control_config_for_url(nats_url, &database_url)
}

/// Like [`control_config`] for any `database_url` (`postgres://...`, say).
pub fn control_config_for_url(nats_url: &str, database_url: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nconsole_listen = \"127.0.0.1:0\"\ndatabase_url = {}\nnats_url = {}\n\
         {LOOPBACK_ALLOW_CIDRS}\n\
         encryption_key = {}\ndispatcher_token = {}\n\
         bootstrap_tokens = {{ {TENANT} = {}, {OTHER_TENANT} = {} }}\n",
        toml_string(database_url),
        toml_string(nats_url),
        toml_string(TEST_ENCRYPTION_KEY),
        toml_string(DISPATCHER_TOKEN),
        toml_string(OWNER_TOKEN),
        toml_string(OTHER_OWNER_TOKEN),
    )
}

/// Config for `hookd dispatcher`, with the dispatcher token; append more `key = value` lines
/// as needed.
pub fn dispatcher_config(nats_url: &str, control_url: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nnats_url = {}\ncontrol_url = {}\n{LOOPBACK_ALLOW_CIDRS}\n\
         control_token = {}\n",
        toml_string(nats_url),
        toml_string(control_url),
        toml_string(DISPATCHER_TOKEN),
    )
}

/// A TOML basic string; JSON string escaping is valid TOML for these (paths, URLs).
fn toml_string(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

/// A running `hookd` process with its config and log in its own temporary directory.
///
/// Dropping it kills the process (SIGKILL); if the thread is panicking (a failed test) the log
/// tail is printed to stderr first.
pub struct HookdProcess {
    role: Role,
    addr: SocketAddr,
    /// From a `hookd <role> metrics on <addr>` line, if the process printed one.
    metrics: Arc<Mutex<Option<SocketAddr>>>,
    /// From a `hookd control console on <url>` line (the web console), if printed.
    console: Arc<Mutex<Option<String>>>,
    log_path: PathBuf,
    // Field order matters: the process must die before its directory is removed.
    child: ChildGuard,
    _dir: TempDir,
}

/// What the stdout reader thread reports.
enum StdoutEvent {
    Ready(SocketAddr),
    BadReadyLine(String),
    Closed,
}

impl HookdProcess {
    /// Starts `hookd --config <file> <role>` with `config_toml` and waits (up to 30 s) for its
    /// ready line `hookd <role> ready on <addr>` on stdout.
    pub fn start(role: Role, config_toml: &str) -> anyhow::Result<HookdProcess> {
        HookdProcess::start_with_env(role, config_toml, &[])
    }

    /// Like [`HookdProcess::start`] with extra environment variables for the child.
    pub fn start_with_env(
        role: Role,
        config_toml: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<HookdProcess> {
        let dir = tempfile::Builder::new().prefix(&format!("hookd-{role}-")).tempdir()?;
        let config_path = dir.path().join(format!("{role}.toml"));
        std::fs::write(&config_path, config_toml)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let mut command = Command::new(hookd_binary()?);
        command.arg("--config").arg(&config_path).arg(role.as_str());
        // Only the child's environment: tests run in parallel threads of one process.
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info,hookd=debug");
        }
        // Plain log files, no colour escapes.
        command.env("NO_COLOR", "1");
        command.envs(env.iter().copied());
        HookdProcess::start_command(role, command, dir, READY_TIMEOUT)
    }

    /// Spawns `command` (stdout piped, stderr to the log in `dir`) and waits for the ready line.
    /// Separate from `start` so tests can stand in a fake program for `hookd`.
    fn start_command(
        role: Role,
        mut command: Command,
        dir: TempDir,
        timeout: Duration,
    ) -> anyhow::Result<HookdProcess> {
        let log_path = dir.path().join(format!("hookd-{role}.log"));
        // Append mode: the stdout thread writes to the same file, and O_APPEND keeps the
        // two writers' lines from overwriting each other.
        let log = OpenOptions::new().create(true).append(true).open(&log_path)?;
        let stdout_log = log.try_clone()?;
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let stdout = child.stdout.take().context("child stdout was not piped")?;
        let mut child = ChildGuard::new(child);

        let (events, ready) = mpsc::channel();
        let prefix = format!("hookd {role} ready on ");
        let metrics = Arc::new(Mutex::new(None));
        let metrics_line = (format!("hookd {role} metrics on "), metrics.clone());
        let console = Arc::new(Mutex::new(None));
        let console_line = (format!("hookd {role} console on "), console.clone());
        std::thread::Builder::new().name(format!("hookd-{role}-stdout")).spawn(move || {
            read_stdout(stdout, stdout_log, &prefix, (&metrics_line, &console_line), events)
        })?;

        let addr = blocking(|| wait_ready(role, &mut child, &ready, &log_path, timeout))?;
        Ok(HookdProcess { role, addr, metrics, console, log_path, child, _dir: dir })
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The gRPC address from the ready line.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/metrics`: the control plane's metrics listener, or the dispatcher's
    /// health listener, which serves the metrics too.
    pub fn metrics_url(&self) -> String {
        let metrics = *self.metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        format!("http://{}/metrics", metrics.unwrap_or(self.addr))
    }

    /// The web console's base URL (`http://ADDR`), from the control plane's
    /// `hookd control console on <url>` line; `None` when the console is off.
    pub fn console_url(&self) -> Option<String> {
        self.console.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// `http://ADDR`.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The log: the process' stderr plus any stdout lines (prefixed `[stdout]`).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log_path, lines)
    }

    /// SIGKILL (like `kill -9`, a crash) and wait for the exit. Idempotent.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        self.child.kill()
    }

    /// SIGTERM (graceful shutdown) and wait up to 10 s for the exit; SIGKILL and an error if it
    /// does not exit in time. Returns the exit status.
    pub fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        blocking(|| self.child.terminate(TERMINATE_TIMEOUT)).with_context(|| {
            format!("hookd {}; log tail:\n{}", self.role, self.log_tail(TAIL_LINES))
        })
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// The exit status if the process has exited, without blocking.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait()
    }
}

impl Drop for HookdProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- hookd {} (pid {}, {}) log tail ----\n{}\n---- end ----",
                self.role,
                self.pid(),
                self.addr,
                self.log_tail(TAIL_LINES)
            );
        }
        // Then `child` is killed and reaped by its guard, then the directory is removed.
    }
}

/// A stdout line's prefix and where the value after it is kept.
type Announced<T> = (String, Arc<Mutex<Option<T>>>);

/// Runs on its own thread until the child's stdout closes: reports the ready line, copies every
/// other line to the log, and keeps draining so the child never blocks on a full pipe.
fn read_stdout(
    stdout: std::process::ChildStdout,
    mut log: File,
    prefix: &str,
    ((metrics_prefix, metrics), (console_prefix, console)): (
        &Announced<SocketAddr>,
        &Announced<String>,
    ),
    events: mpsc::Sender<StdoutEvent>,
) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        // Logging is best effort; the receiving side may be gone after the test finished.
        let _ = writeln!(log, "[stdout] {text}");
        if let Some(addr) = text.strip_prefix(metrics_prefix.as_str()) {
            if let Ok(addr) = addr.trim().parse::<SocketAddr>() {
                *metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(addr);
            }
        } else if let Some(url) = text.strip_prefix(console_prefix.as_str()) {
            *console.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(url.trim().to_owned());
        } else if text.starts_with(prefix) {
            let token = text.split_whitespace().next_back().unwrap_or_default();
            let event = match token.parse::<SocketAddr>() {
                Ok(addr) => StdoutEvent::Ready(addr),
                Err(_) => StdoutEvent::BadReadyLine(text.to_owned()),
            };
            let _ = events.send(event);
        }
    }
    let _ = events.send(StdoutEvent::Closed);
}

fn wait_ready(
    role: Role,
    child: &mut ChildGuard,
    ready: &mpsc::Receiver<StdoutEvent>,
    log_path: &Path,
    timeout: Duration,
) -> anyhow::Result<SocketAddr> {
    let deadline = Instant::now() + timeout;
    let event = ready.recv_timeout(timeout);
    let failure = match event {
        Ok(StdoutEvent::Ready(addr)) => return Ok(addr),
        Ok(StdoutEvent::BadReadyLine(line)) => {
            format!("printed a ready line without a socket address: {line:?}")
        }
        Ok(StdoutEvent::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            // Stdout closes when the process exits; give it a moment to be reaped so the
            // error can say how it ended.
            let reap_deadline = deadline.min(Instant::now() + Duration::from_secs(2));
            let status = loop {
                if let Some(status) = child.try_wait() {
                    break Some(status);
                }
                if Instant::now() >= reap_deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            match status {
                Some(status) => format!("exited before becoming ready ({status})"),
                None => "closed stdout before becoming ready".to_owned(),
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            format!("did not print `hookd {role} ready on <addr>` within {timeout:?}")
        }
    };
    // Kill before reading the log so it is complete.
    let _ = child.kill();
    anyhow::bail!(
        "hookd {role} {failure}; log {} tail:\n{}",
        log_path.display(),
        file_tail(log_path, TAIL_LINES)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(script: &str) -> anyhow::Result<(Command, TempDir)> {
        let dir = tempfile::Builder::new().prefix("hookd-fake-").tempdir()?;
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        Ok((command, dir))
    }

    fn proc_exists(pid: u32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn parses_the_ready_line_and_kills_on_drop() -> anyhow::Result<()> {
        // `exec` so the pid we kill is the one holding stdout (no orphaned `sleep`).
        let (command, dir) = fake(
            "echo starting >&2; echo some noise; \
             echo hookd dispatcher ready on 127.0.0.1:1234; exec sleep 30",
        )?;
        let mut process =
            HookdProcess::start_command(Role::Dispatcher, command, dir, Duration::from_secs(5))?;
        assert_eq!(process.addr(), "127.0.0.1:1234".parse::<SocketAddr>()?);
        assert_eq!(process.grpc_url(), "http://127.0.0.1:1234");
        assert!(process.is_running());
        let log = process.log_tail(10);
        assert!(log.contains("starting") && log.contains("[stdout] some noise"), "{log}");

        let pid = process.pid();
        let log_path = process.log_path().to_path_buf();
        drop(process);
        assert!(!proc_exists(pid), "fake hookd {pid} still exists after drop");
        assert!(!log_path.exists());
        Ok(())
    }

    #[test]
    fn a_ready_line_for_another_role_is_not_enough() -> anyhow::Result<()> {
        let (command, dir) =
            fake("echo hookd control ready on 127.0.0.1:1; echo waiting >&2; exec sleep 30")?;
        let started = Instant::now();
        let error =
            HookdProcess::start_command(Role::Dispatcher, command, dir, Duration::from_millis(300))
                .err()
                .context("must time out")?;
        let message = format!("{error:#}");
        assert!(message.contains("did not print"), "{message}");
        assert!(message.contains("waiting"), "log tail missing: {message}");
        assert!(started.elapsed() < Duration::from_secs(5));
        Ok(())
    }

    #[test]
    fn exiting_before_ready_reports_status_and_log() -> anyhow::Result<()> {
        let (command, dir) = fake("echo 'error: cannot bind' >&2; exit 3")?;
        let error =
            HookdProcess::start_command(Role::Control, command, dir, Duration::from_secs(10))
                .err()
                .context("must fail")?;
        let message = format!("{error:#}");
        assert!(message.contains("exited before becoming ready"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.contains("error: cannot bind"), "{message}");
        Ok(())
    }

    #[test]
    fn a_garbled_ready_line_fails() -> anyhow::Result<()> {
        let (command, dir) = fake("echo hookd control ready on nowhere; exec sleep 30")?;
        let error =
            HookdProcess::start_command(Role::Control, command, dir, Duration::from_secs(5))
                .err()
                .context("must fail")?;
        assert!(format!("{error:#}").contains("without a socket address"), "{error:#}");
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn terminate_sends_sigterm() -> anyhow::Result<()> {
        // The trap proves SIGTERM (not SIGKILL) arrived: the handler runs and exits with 7.
        let (command, dir) = fake(
            "trap 'echo got term >&2; exit 7' TERM; echo hookd control ready on 127.0.0.1:9; \
             while true; do sleep 0.05; done",
        )?;
        let mut process =
            HookdProcess::start_command(Role::Control, command, dir, Duration::from_secs(5))?;
        let status = process.terminate()?;
        assert_eq!(status.code(), Some(7), "{}", process.log_tail(5));
        assert!(process.log_tail(5).contains("got term"));
        assert!(!process.is_running());
        Ok(())
    }

    #[test]
    fn kill_is_sigkill() -> anyhow::Result<()> {
        use std::os::unix::process::ExitStatusExt as _;
        let (command, dir) = fake("echo hookd control ready on 127.0.0.1:9; exec sleep 30")?;
        let mut process =
            HookdProcess::start_command(Role::Control, command, dir, Duration::from_secs(5))?;
        let status = process.kill()?;
        assert_eq!(status.signal(), Some(9));
        assert!(!process.is_running());
        // Idempotent.
        assert_eq!(process.kill()?.signal(), Some(9));
        Ok(())
    }

    #[test]
    fn configs_are_toml() {
        let control = control_config("nats://127.0.0.1:4222", Path::new("/tmp/x/hookd.db"));
        assert!(
            control.starts_with(
                "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
                 console_listen = \"127.0.0.1:0\"\n\
                 database_url = \"sqlite:///tmp/x/hookd.db?mode=rwc\"\n\
                 nats_url = \"nats://127.0.0.1:4222\"\nallow_cidrs = [\"127.0.0.0/8\", \"::1/128\"]\n\
                 encryption_key = "
            ),
            "{control}"
        );
        assert!(control.contains(&format!("dispatcher_token = \"{DISPATCHER_TOKEN}\"\n")));
        assert!(control.contains(&format!(
            "bootstrap_tokens = {{ default = \"{OWNER_TOKEN}\", other = \"{OTHER_OWNER_TOKEN}\" }}\n"
        )));
        let dispatcher = dispatcher_config("nats://127.0.0.1:4222", "http://127.0.0.1:5000");
        assert_eq!(
            dispatcher,
            format!(
                "listen = \"127.0.0.1:0\"\nnats_url = \"nats://127.0.0.1:4222\"\n\
                 control_url = \"http://127.0.0.1:5000\"\nallow_cidrs = [\"127.0.0.0/8\", \"::1/128\"]\n\
                 control_token = \"{DISPATCHER_TOKEN}\"\n"
            )
        );
    }

    #[test]
    fn missing_binary_error_names_the_fix() {
        // Only meaningful when neither HOOKD_BIN nor a built hookd is around.
        if std::env::var_os("HOOKD_BIN").is_some() {
            return;
        }
        if let Err(error) = hookd_binary() {
            let message = error.to_string();
            assert!(message.contains("cargo build -p hookd"), "{message}");
            assert!(message.contains("/debug/hookd"), "{message}");
        }
    }
}
