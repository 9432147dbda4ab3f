//! Result rows, the printed table, and `results.md` / `results.json`.

use std::path::Path;

use hdrhistogram::Histogram;

use super::procs::Machine;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// From a µs histogram; `offset_us` is subtracted (for signed values stored shifted).
    pub fn from_histogram(h: &Histogram<u64>, offset_us: u64) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let ms = |v: u64| (v as f64 - offset_us as f64) / 1000.0;
        Some(Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"count": self.count, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms,
            "max_ms": self.max_ms})
    }
}

/// One scenario's outcome: one line of the table, plus every measured number in `metrics`.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub id: String,
    pub name: String,
    /// The offered load, e.g. `5 000 ev/s × 60 s`.
    pub load: String,
    /// Deliveries (or records) per second.
    pub throughput: Option<f64>,
    /// Throughput as a fraction of the ceiling (or of the row it is compared with).
    pub ratio: Option<f64>,
    pub ratio_of: String,
    pub latency: Option<Latency>,
    pub notes: String,
    pub metrics: serde_json::Value,
    pub error: Option<String>,
}

impl Row {
    pub fn new(id: &str, name: &str) -> Row {
        Row {
            id: id.to_owned(),
            name: name.to_owned(),
            metrics: serde_json::json!({}),
            ..Default::default()
        }
    }

    pub fn metric(&mut self, key: &str, value: serde_json::Value) {
        if let serde_json::Value::Object(map) = &mut self.metrics {
            map.insert(key.to_owned(), value);
        }
    }

    fn cells(&self) -> Vec<String> {
        let f = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), fmt_ms);
        let notes = match &self.error {
            Some(e) => format!("ERROR: {e}"),
            None => self.notes.clone(),
        };
        vec![
            self.id.clone(),
            self.name.clone(),
            self.load.clone(),
            self.throughput.map_or_else(|| "–".to_owned(), |t| format!("{t:.0}/s")),
            self.ratio.map_or_else(
                || "–".to_owned(),
                |r| format!("{:.2} × {}", r, self.ratio_of).trim_end().to_owned(),
            ),
            f(self.latency.map(|l| l.p50_ms)),
            f(self.latency.map(|l| l.p99_ms)),
            f(self.latency.map(|l| l.max_ms)),
            notes.replace('|', "\\|").replace('\n', " "),
        ]
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "name": self.name, "load": self.load,
            "throughput_per_s": self.throughput, "ratio": self.ratio, "ratio_of": self.ratio_of,
            "latency": self.latency.map(|l| l.json()), "notes": self.notes,
            "error": self.error, "metrics": self.metrics,
        })
    }
}

fn fmt_ms(v: f64) -> String {
    if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

pub const HEADER: [&str; 9] =
    ["#", "scenario", "load", "throughput", "ratio", "p50 ms", "p99 ms", "max ms", "notes"];

/// The row as one Markdown table line.
pub fn markdown_line(row: &Row) -> String {
    format!("| {} |", row.cells().join(" | "))
}

pub fn markdown_header() -> String {
    format!("| {} |\n|{}", HEADER.join(" | "), "---|".repeat(HEADER.len()))
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct Report {
    pub machine: Machine,
    pub quick: bool,
    pub rows: Vec<Row>,
    pub duration_secs: f64,
}

impl Report {
    pub fn ceiling(&self) -> Option<f64> {
        self.rows.iter().find(|r| r.id == "C").and_then(|r| r.throughput)
    }

    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        out.push_str("# hookd benchmark results\n\n");
        out.push_str(&format!(
            "Measured by `make bench` (`hookd-bench{}`) on {}; the run took {:.0} s. How to read \
             this table: `tests/bench/README.md`.\n\n",
            if self.quick { " --quick" } else { "" },
            m.date,
            self.duration_secs
        ));
        out.push_str("| machine | |\n|---|---|\n");
        out.push_str(&format!("| cores (nproc) | {} |\n", m.nproc));
        out.push_str(&format!("| CPU | {} |\n", m.cpu_model));
        out.push_str(&format!("| memory | {} |\n", m.memory));
        out.push_str(&format!("| kernel | {} |\n", m.kernel));
        out.push_str(&format!("| nats-server | {} |\n", m.nats_server));
        out.push_str(&format!("| date | {} |\n\n", m.date));
        if let Some(c) = self.ceiling() {
            out.push_str(&format!(
                "**Ceiling** (bare JetStream → one pull consumer → hyper POST → ack, same sink, \
                 same run): **{c:.0} deliveries/s**.\n\n"
            ));
        }
        out.push_str(&markdown_header());
        out.push('\n');
        for row in &self.rows {
            out.push_str(&markdown_line(row));
            out.push('\n');
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "machine": self.machine.json(),
            "quick": self.quick,
            "duration_secs": self.duration_secs,
            "ceiling_per_s": self.ceiling(),
            "rows": self.rows.iter().map(Row::json).collect::<Vec<_>>(),
        })
    }

    /// Writes `results.md` and `results.json` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("results.md"), self.markdown())?;
        std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(&self.json())?)?;
        Ok(())
    }
}
