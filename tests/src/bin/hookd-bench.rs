//! `make bench`: runs hookd's benchmark scenarios against the machine's own ceiling and writes
//! `tests/bench/results.md` and `results.json`. See `tests/bench/README.md`.
//!
//! `hookd-bench [--quick] [--scenarios 1,2,...] [--out DIR]`

use std::path::PathBuf;

use anyhow::Context as _;
use hookd_tests::bench::{Options, run};

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options { quick: false, scenarios: Vec::new(), out: None };
    let mut out = Some(PathBuf::from("tests/bench"));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--scenarios" => {
                let list = args.next().context("--scenarios needs a list, e.g. 1,2,7")?;
                for n in list.split(',').filter(|s| !s.trim().is_empty()) {
                    let n: u8 = n.trim().parse().with_context(|| format!("scenario {n:?}"))?;
                    anyhow::ensure!((1..=11).contains(&n), "scenarios are 1 to 11, not {n}");
                    options.scenarios.push(n);
                }
            }
            "--out" => out = Some(PathBuf::from(args.next().context("--out needs a directory")?)),
            "--no-out" => out = None,
            "-h" | "--help" => {
                println!(
                    "hookd-bench [--quick] [--scenarios 1,2,...] [--out DIR | --no-out]\n\
                     Runs the ceiling and scenarios 1-11 (all by default) and writes \
                     DIR/results.md and DIR/results.json (default DIR: tests/bench)."
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    options.out = out;
    Ok(options)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let options = parse_args()?;
    let report = run(&options).await?;
    let errors = report.rows.iter().filter(|r| r.error.is_some()).count();
    anyhow::ensure!(errors == 0, "{errors} scenario(s) failed; see the table");
    Ok(())
}
