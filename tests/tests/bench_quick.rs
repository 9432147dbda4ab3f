//! The benchmark harness in `--quick` mode (tiny counts, a few seconds per scenario): every
//! scenario must produce a sane row. Numbers from a debug build mean nothing; `make bench`
//! measures.

use std::time::Duration;

use hookd_tests::bench::{Options, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_bench_produces_a_sane_row_per_scenario() -> anyhow::Result<()> {
    let out = tempfile::tempdir()?;
    let options = Options { quick: true, scenarios: Vec::new(), out: Some(out.path().to_owned()) };
    let report = tokio::time::timeout(Duration::from_secs(240), run(&options)).await??;

    let errors: Vec<_> = report
        .rows
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.id)))
        .collect();
    assert!(errors.is_empty(), "scenarios failed: {errors:#?}");
    let ceiling = report.ceiling().expect("a ceiling row");
    assert!(ceiling > 0.0, "ceiling {ceiling}");
    let row =
        |id: &str| report.rows.iter().find(|r| r.id == id).unwrap_or_else(|| panic!("no row {id}"));
    for id in [
        "1", "1s", "1d", "2a", "2c", "2d", "3", "5", "6", "7", "8", "1p", "1sp", "1dp", "2bp",
        "10", "10a", "10b", "11a", "11b", "11c",
    ] {
        let t = row(id).throughput.unwrap_or(0.0);
        assert!(t > 0.0, "row {id}: throughput {t}");
    }
    for id in ["1", "1d", "8", "1p", "10", "10a", "10b"] {
        assert!(row(id).ratio.is_some_and(|r| r > 0.0), "row {id}: no ratio to the ceiling");
    }
    for id in ["11a", "11b", "11c"] {
        assert!(row(id).ratio.is_some_and(|r| r > 0.0), "row {id}: no ratio to its plain run");
    }
    assert!(row("2c").ratio.is_some_and(|r| r > 0.0), "row 2c: no CPU ratio to row 1");
    // CPU per delivery of every hookd process, and the database server's on Postgres.
    for (id, process) in [("1", "dispatcher1"), ("2c", "control"), ("1p", "postgres")] {
        let us = &row(id).metrics["cpu_us_per_delivery"];
        assert!(us[process].as_f64().is_some_and(|v| v > 0.0), "row {id}: {us}");
        assert!(us["hookd_total"].as_f64().is_some_and(|v| v > 0.0), "row {id}: {us}");
    }
    for id in ["1s", "2a", "3", "6"] {
        let l = row(id).latency.unwrap_or_else(|| panic!("row {id}: no latency"));
        assert!(
            l.count > 0 && l.p50_ms > 0.0 && l.p99_ms >= l.p50_ms && l.max_ms >= l.p99_ms,
            "row {id}: {l:?}"
        );
    }
    let retry = row("4").latency.expect("retry lateness measured");
    assert!(retry.count > 0, "no retry measured");
    // A retry cannot come before its schedule by more than clock noise.
    assert!(retry.p50_ms > -50.0, "retries early: {retry:?}");

    let md = std::fs::read_to_string(out.path().join("results.md"))?;
    assert!(md.contains("| 1 | throughput, 1 endpoint |") && md.contains("nats-server"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json"))?)?;
    assert!(json["ceiling_per_s"].as_f64().is_some_and(|c| c > 0.0));
    assert!(json["machine"]["nproc"].as_u64().is_some_and(|n| n > 0));
    Ok(())
}
