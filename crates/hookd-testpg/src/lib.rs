//! Throwaway PostgreSQL servers for tests, started from the machine's PostgreSQL installation:
//! `initdb` into a temporary folder, `pg_ctl start` on a free loopback port (its socket in the
//! same folder), a fresh database per test, and `pg_ctl stop -m immediate` plus removal of the
//! folder at the end.
//!
//! A test process shares one server ([`PgServer::shared`]); an owned one ([`PgServer::start`])
//! stops when dropped. Either way the stop is done by a small watchdog process that waits for
//! the end of a pipe the test process holds: dropping the server closes it, and so does the
//! kernel when the test process exits, however it exits (a `static` is never dropped, and a
//! killed test runs no destructor at all). So no server outlives its tests.
//!
//! `initdb` refuses to run as root: as root, every PostgreSQL command runs as the `postgres`
//! user (which the PostgreSQL packages create); as anyone else, as that user. Missing
//! binaries or user make [`PgServer::start`] fail with a message that says what to install;
//! tests never skip silently.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where a test can point the fixture at another installation (read, never set, by tests).
pub const BIN_DIR_VAR: &str = "HOOKD_PG_BIN";
/// The database superuser `initdb` creates; loopback connections are trusted.
const SUPERUSER: &str = "postgres";
/// Attempts at a free port: another process may take the one picked before the server binds.
const PORT_ATTEMPTS: usize = 5;
/// How long `pg_ctl` waits for the server to start or stop.
const PG_CTL_TIMEOUT_SECS: &str = "30";

#[derive(Debug)]
pub struct PgError(String);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PgError {}

fn error(message: impl Into<String>) -> PgError {
    PgError(message.into())
}

/// A running throwaway PostgreSQL server.
pub struct PgServer {
    port: u16,
    bin: PathBuf,
    /// Held open for the watchdog; closing it stops the server.
    watchdog_pipe: Mutex<Option<ChildStdin>>,
    watchdog: Mutex<Option<Child>>,
    /// Who runs `pg_ctl`, and the options the server was started with, for a restart.
    run_as: RunAs,
    options: String,
    // Removed by the watchdog (the data folder belongs to another user); the handle is
    // kept so the path stays reserved.
    _dir: tempfile::TempDir,
    /// How long initdb plus start took, for reports.
    pub startup: Duration,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer").field("port", &self.port).finish_non_exhaustive()
    }
}

/// Who runs the PostgreSQL commands.
#[derive(Debug, Clone)]
enum RunAs {
    /// This process' own user (not root).
    Me,
    /// The `postgres` user, through `runuser`, with its uid and gid for `chown`.
    Postgres { uid: u32, gid: u32 },
}

impl RunAs {
    fn detect() -> Result<RunAs, PgError> {
        let euid = output(Command::new("id").arg("-u"))
            .map_err(|e| error(format!("cannot tell which user runs the tests: {e}")))?;
        if euid.trim() != "0" {
            return Ok(RunAs::Me);
        }
        let id = |flag: &str| -> Result<u32, PgError> {
            let text = output(Command::new("id").args([flag, SUPERUSER])).map_err(|e| {
                error(format!(
                    "the tests run as root, and initdb refuses root, so PostgreSQL must run as \
                     the `postgres` user, which does not exist ({e}); install the postgresql \
                     package (it creates the user) or run the tests as a non-root user"
                ))
            })?;
            text.trim().parse().map_err(|_| error(format!("`id {flag} postgres` said {text:?}")))
        };
        Ok(RunAs::Postgres { uid: id("-u")?, gid: id("-g")? })
    }

    /// A command running `program` as this user.
    fn command(&self, program: &Path) -> Command {
        match self {
            RunAs::Me => Command::new(program),
            RunAs::Postgres { .. } => {
                let mut c = Command::new("runuser");
                c.args(["-u", SUPERUSER, "--"]).arg(program);
                c
            }
        }
    }

    /// Hands `path` to this user.
    fn own(&self, path: &Path) -> Result<(), PgError> {
        if let RunAs::Postgres { uid, gid } = self {
            std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                .map_err(|e| error(format!("cannot hand {} to postgres: {e}", path.display())))?;
        }
        Ok(())
    }
}

/// Runs `command` to completion; its stdout, or an error with its stderr.
fn output(command: &mut Command) -> Result<String, String> {
    let program = format!("{:?}", command.get_program());
    let out =
        command.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The folder with `initdb`, `pg_ctl` and `psql`: `$HOOKD_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian, Ubuntu), else the folder of `initdb` on PATH.
fn bin_dir() -> Result<PathBuf, PgError> {
    let complete = |dir: &Path| ["initdb", "pg_ctl", "psql"].iter().all(|b| dir.join(b).is_file());
    if let Some(dir) = std::env::var_os(BIN_DIR_VAR) {
        let dir = PathBuf::from(dir);
        return if complete(&dir) {
            Ok(dir)
        } else {
            Err(error(format!(
                "{} (from {BIN_DIR_VAR}) lacks initdb, pg_ctl or psql",
                dir.display()
            )))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| complete(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| complete(dir));
    on_path.ok_or_else(|| {
        error(
            "PostgreSQL is not installed: initdb, pg_ctl and psql were found neither in \
             /usr/lib/postgresql/<version>/bin nor on PATH; install it (`apt-get install \
             postgresql`) or set HOOKD_PG_BIN to its bin folder",
        )
    })
}

fn free_port() -> Result<u16, PgError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| error(format!("cannot find a free loopback port: {e}")))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| error(e.to_string()))
}

/// The watchdog: waits for its stdin to close, then stops the server (immediate shutdown of
/// the postmaster whose pid is in the data folder) and removes the folder. It ignores the
/// terminal's signals, so a Ctrl-C that ends the tests still lets it clean up.
const WATCHDOG: &str = r#"trap '' INT TERM HUP
cat >/dev/null
"$@" -D "$DATA" -m immediate -w -t 30 stop >/dev/null 2>&1
rm -rf "$DIR""#;

static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();
static DATABASES: AtomicU64 = AtomicU64::new(0);

impl PgServer {
    /// The server of this test process, started at the first call. Panics with the reason
    /// when PostgreSQL cannot run here: a Postgres test must fail, not skip.
    pub fn shared() -> &'static PgServer {
        match SHARED.get_or_init(|| PgServer::start().map_err(|e| e.to_string())) {
            Ok(server) => server,
            Err(reason) => panic!("cannot start a PostgreSQL server for the tests: {reason}"),
        }
    }

    /// Starts a server of its own, stopped and removed when dropped.
    pub fn start() -> Result<PgServer, PgError> {
        let started = Instant::now();
        let bin = bin_dir()?;
        let run_as = RunAs::detect()?;
        let dir = tempfile::Builder::new()
            .prefix("hookd-pg-")
            .tempdir()
            .map_err(|e| error(format!("cannot create a temporary folder: {e}")))?;
        // The postgres user must reach the folders inside.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| error(format!("cannot open {} to postgres: {e}", dir.path().display())))?;
        let data = dir.path().join("data");
        let run = dir.path().join("run");
        for folder in [&data, &run] {
            std::fs::create_dir(folder)
                .map_err(|e| error(format!("cannot create {}: {e}", folder.display())))?;
            run_as.own(folder)?;
        }

        // From here on the watchdog owns the cleanup, whatever fails next.
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("hookd-pg-watchdog")
            .args(run_as.command(&bin.join("pg_ctl")).get_program_and_args())
            .env("DATA", &data)
            .env("DIR", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| error(format!("cannot start the cleanup watchdog: {e}")))?;
        let pipe = watchdog.stdin.take();
        let mut server = PgServer {
            port: 0,
            bin: bin.clone(),
            watchdog_pipe: Mutex::new(pipe),
            watchdog: Mutex::new(Some(watchdog)),
            run_as: run_as.clone(),
            options: String::new(),
            _dir: dir,
            startup: Duration::ZERO,
        };

        output(
            run_as
                .command(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
                // A throwaway cluster needs no durability.
                .args(["--no-sync", "--no-instructions"]),
        )
        .map_err(|e| error(format!("initdb failed: {e}")))?;

        let log = run.join("postgres.log");
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
                 -c shared_buffers=32MB",
                run.display()
            );
            let started_server = output(
                run_as
                    .command(&bin.join("pg_ctl"))
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(&log)
                    .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "-o", &options, "start"]),
            );
            match started_server {
                Ok(_) => {
                    server.port = port;
                    server.options = options;
                    server.startup = started.elapsed();
                    return Ok(server);
                }
                Err(e) => {
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    last_error = format!("{e}; log: {}", tail.lines().last().unwrap_or_default());
                    // Only a port taken in between is worth another try.
                    if !tail.contains("could not bind") && !tail.contains("in use") {
                        break;
                    }
                }
            }
        }
        Err(error(format!("pg_ctl could not start the server: {last_error}")))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates an empty database with a name no other call returns; its URL.
    pub fn create_database(&self) -> Result<String, PgError> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed),
            nanos % 1_000_000_000
        );
        self.psql(&format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Runs one SQL statement as the superuser in database `postgres`; its output rows.
    pub fn psql(&self, sql: &str) -> Result<String, PgError> {
        self.psql_in("postgres", sql)
    }

    /// Runs one SQL statement as the superuser in database `database`; its output rows
    /// (unaligned, no headers).
    pub fn psql_in(&self, database: &str, sql: &str) -> Result<String, PgError> {
        output(
            Command::new(self.bin.join("psql"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", SUPERUSER])
                .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql]),
        )
        .map_err(|e| error(format!("psql {sql:?}: {e}")))
    }

    /// The pid of the postmaster, from the first line of `postmaster.pid` (readable: the
    /// folder belongs to this user, or this user is root).
    pub fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self._dir.path().join("data/postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Restarts the server as an operator would (`pg_ctl stop -m fast`: sessions are ended,
    /// committed work is flushed), keeps it down for `down`, and starts it again on the same
    /// port and data. Connections break meanwhile; clients must reconnect.
    pub fn restart(&self, down: Duration) -> Result<(), PgError> {
        let data = self._dir.path().join("data");
        let pg_ctl = self.bin.join("pg_ctl");
        output(self.run_as.command(&pg_ctl).arg("-D").arg(&data).args([
            "-m",
            "fast",
            "-w",
            "-t",
            PG_CTL_TIMEOUT_SECS,
            "stop",
        ]))
        .map_err(|e| error(format!("pg_ctl stop failed: {e}")))?;
        std::thread::sleep(down);
        let log = self._dir.path().join("run/postgres.log");
        output(self.run_as.command(&pg_ctl).arg("-D").arg(&data).arg("-l").arg(&log).args([
            "-w",
            "-t",
            PG_CTL_TIMEOUT_SECS,
            "-o",
            &self.options,
            "start",
        ]))
        .map_err(|e| error(format!("pg_ctl start failed: {e}")))?;
        Ok(())
    }

    /// The folder holding the data folder and the socket; gone once the server stopped.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Stops the server and removes its folder, waiting for both.
    fn stop(&self) {
        drop(lock(&self.watchdog_pipe).take());
        if let Some(mut watchdog) = lock(&self.watchdog).take() {
            let _ = watchdog.wait();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh database on this process' shared server; panics with the reason when there is
/// no PostgreSQL to run.
pub fn fresh_database_url() -> String {
    match PgServer::shared().create_database() {
        Ok(url) => url,
        Err(e) => panic!("cannot create a test database: {e}"),
    }
}

/// `Command::get_program` and `get_args` together, to pass a built command to a shell.
trait ProgramAndArgs {
    fn get_program_and_args(&self) -> Vec<std::ffi::OsString>;
}

impl ProgramAndArgs for Command {
    fn get_program_and_args(&self) -> Vec<std::ffi::OsString> {
        std::iter::once(self.get_program().to_owned())
            .chain(self.get_args().map(ToOwned::to_owned))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Whether `pid` is a live process: a zombie (the postmaster waits for its reaper, which
    /// is not this process) counts as gone.
    fn running(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .is_ok_and(|status| !status.lines().any(|l| l.starts_with("State:") && l.contains("Z")))
    }

    #[test]
    fn a_server_starts_serves_fresh_databases_and_is_gone_after_drop() {
        let server = PgServer::start().unwrap();
        eprintln!("initdb and start took {:?}", server.startup);
        let (a, b) = (server.create_database().unwrap(), server.create_database().unwrap());
        assert_ne!(a, b);
        let name = a.rsplit('/').next().unwrap();
        assert_eq!(server.psql_in(name, "SELECT 40 + 2").unwrap().trim(), "42");
        let pid = server.pid().expect("postmaster pid");
        assert!(running(pid));
        let dir = server.dir().to_path_buf();
        drop(server);
        assert!(!running(pid), "postmaster {pid} still runs");
        assert!(!dir.exists(), "{} still exists", dir.display());
    }

    #[test]
    fn the_shared_server_is_one_server() {
        let first = PgServer::shared();
        assert_eq!(first.port(), PgServer::shared().port());
        assert!(fresh_database_url().starts_with(&first.url("t_")));
    }
}
