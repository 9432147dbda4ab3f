//! What the kernel says about the processes under test and the machine: CPU time, resident
//! memory and open sockets from `/proc`, and a one-line machine description.

use std::path::Path;
use std::time::Instant;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// User plus system CPU seconds `pid` has used, or 0 if it is gone.
/// The name under which a PostgreSQL server is sampled together with its backends.
pub const POSTGRES: &str = "postgres";

/// CPU seconds of `pid` and its children (a PostgreSQL postmaster and the backends that do
/// the control plane's work), living ones only.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let mut total = cpu_seconds(pid);
    let Ok(entries) = std::fs::read_dir("/proc") else { return total };
    for entry in entries.flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(pid) {
            total += cpu_seconds(child);
        }
    }
    total
}

fn sample(name: &str, pid: u32) -> f64 {
    if name == POSTGRES { tree_cpu_seconds(pid) } else { cpu_seconds(pid) }
}

pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // The command name may contain spaces; fields after it start with the state (field 3).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// Resident set size of `pid` in bytes (`VmRSS`), or 0 if it is gone.
pub fn rss_bytes(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Open sockets of `pid`: its fd links that point at `socket:[…]`.
pub fn open_sockets(pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

/// Bytes of every file under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// CPU used by named processes between `start` and `finish`.
pub struct CpuSampler {
    procs: Vec<(String, u32, f64)>,
    started: Instant,
}

/// One process' share of the machine over a sample: CPU seconds / (wall seconds × cores).
#[derive(Debug, Clone)]
pub struct CpuShare {
    pub name: String,
    pub cpu_seconds: f64,
    /// Of the whole machine (all cores), 0–1.
    pub machine_share: f64,
    /// Of one core, 0–(cores).
    pub cores: f64,
}

impl CpuSampler {
    pub fn start(procs: &[(String, u32)]) -> Self {
        Self {
            procs: procs.iter().map(|(n, p)| (n.clone(), *p, sample(n, *p))).collect(),
            started: Instant::now(),
        }
    }

    pub fn finish(&self) -> Vec<CpuShare> {
        let wall = self.started.elapsed().as_secs_f64().max(1e-6);
        let ncpu = nproc() as f64;
        self.procs
            .iter()
            .map(|(name, pid, before)| {
                let used = (sample(name, *pid) - before).max(0.0);
                CpuShare {
                    name: name.clone(),
                    cpu_seconds: used,
                    machine_share: used / wall / ncpu,
                    cores: used / wall,
                }
            })
            .collect()
    }
}

/// `name 43%, …` (share of the whole machine), busiest first.
pub fn format_shares(shares: &[CpuShare]) -> String {
    let mut sorted = shares.to_vec();
    sorted.sort_by(|a, b| b.machine_share.total_cmp(&a.machine_share));
    let total: f64 = sorted.iter().map(|s| s.machine_share).sum();
    let parts: Vec<String> =
        sorted.iter().map(|s| format!("{} {:.0}%", s.name, s.machine_share * 100.0)).collect();
    format!("{} (sum {:.0}%)", parts.join(", "), total * 100.0)
}

/// The hookd processes of a sample (nats-server, control plane, dispatchers; not the bench).
fn is_hookd(share: &CpuShare) -> bool {
    !share.name.starts_with("bench")
}

/// CPU microseconds per delivery of each hookd process, and of all of them together.
pub fn per_delivery_us(shares: &[CpuShare], deliveries: u64) -> (Vec<(String, f64)>, f64) {
    let n = deliveries.max(1) as f64;
    let each: Vec<(String, f64)> = shares
        .iter()
        .filter(|s| is_hookd(s))
        .map(|s| (s.name.clone(), s.cpu_seconds * 1e6 / n))
        .collect();
    let total = each.iter().map(|(_, us)| us).sum();
    (each, total)
}

/// `CPU per delivery 262 µs (dispatcher1 118, control 71, nats-server 73)`.
pub fn format_per_delivery(shares: &[CpuShare], deliveries: u64) -> String {
    let (each, total) = per_delivery_us(shares, deliveries);
    let parts: Vec<String> = each.iter().map(|(name, us)| format!("{name} {us:.0}")).collect();
    format!("CPU per delivery {total:.0} µs ({})", parts.join(", "))
}

pub fn per_delivery_json(shares: &[CpuShare], deliveries: u64) -> serde_json::Value {
    let (each, total) = per_delivery_us(shares, deliveries);
    let mut map = serde_json::Map::new();
    for (name, us) in each {
        map.insert(name, us.into());
    }
    map.insert("hookd_total".to_owned(), total.into());
    serde_json::Value::Object(map)
}

pub fn shares_json(shares: &[CpuShare]) -> serde_json::Value {
    serde_json::Value::Array(
        shares
            .iter()
            .map(|s| {
                serde_json::json!({"process": s.name, "cpu_seconds": s.cpu_seconds,
                    "machine_share": s.machine_share, "cores": s.cores})
            })
            .collect(),
    )
}

pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// What the results were measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
    pub nats_server: String,
    pub date: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or_else(|| "unknown".to_owned(), |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |s| format!("Linux {}", s.trim()));
        let nats_server = std::process::Command::new(crate::nats_server_binary())
            .arg("--version")
            .output()
            .map_or_else(
                |_| "unknown".to_owned(),
                |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
            );
        Machine {
            nproc: nproc(),
            cpu_model,
            memory,
            kernel,
            nats_server,
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"nproc": self.nproc, "cpu_model": self.cpu_model,
            "memory": self.memory, "kernel": self.kernel, "nats_server": self.nats_server,
            "date": self.date})
    }
}
