//! Micro-benchmark of the fan-out's first step, `Event::from_published` (the strict parse:
//! duplicate keys, nesting), and of the delivery stage's `Event::from_json`, on events as
//! producers publish them (small, medium, large). `cargo bench -p hookd-core --bench
//! event_parse` prints the median time per event of several rounds; under `cargo test` it
//! runs each case once, so the bench cannot rot. It also times `webhook::ascii_url`, which
//! every attempt now pays to request the URL in its ASCII form.

use std::{hint::black_box, time::Instant};

use chrono::Utc;
use hookd_core::Event;

/// Rounds per case; the median is reported, which shrugs off a busy neighbour.
const ROUNDS: usize = 15;
/// Work per round, in bytes of events parsed (so every case takes a similar time).
const BYTES_PER_ROUND: usize = 8 * 1024 * 1024;

fn event(data: serde_json::Value) -> Vec<u8> {
    serde_json::json!({
        "id": "evt_0194a0b3-7c1e-7a51-9f4e-3c2b1a0f9e8d",
        "type": "contact-created",
        "entity_id": "contact-42",
        "timestamp": "2024-03-21T13:46:46Z",
        "context": {"user": "u-7", "source": "crm"},
        "data": data,
    })
    .to_string()
    .into_bytes()
}

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let small = event(serde_json::json!({"contactId": "contact-42", "email": "ada@example.com"}));
    let fields: serde_json::Map<String, serde_json::Value> = (0..60)
        .map(|i| (format!("field_{i}"), serde_json::json!({"value": i, "label": "x".repeat(24)})))
        .collect();
    let medium = event(serde_json::Value::Object(fields));
    let rows: Vec<serde_json::Value> = (0..2000)
        .map(|i| serde_json::json!({"sku": format!("sku-{i}"), "qty": i % 7, "price": 9.99}))
        .collect();
    let large = event(serde_json::json!({ "lines": rows }));
    vec![("small", small), ("medium", medium), ("large", large)]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not: then one pass.
    let measure = std::env::args().any(|a| a == "--bench");
    // Other arguments pick parsers by name (`-- from_published`); none runs both.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let now = Utc::now();
    type Parse = fn(&[u8], chrono::DateTime<Utc>) -> Result<Event, hookd_core::EventError>;
    let parsers: [(&str, Parse); 2] =
        [("from_published", Event::from_published), ("from_json", Event::from_json)];
    for ((name, bytes), (parser, parse)) in
        cases().into_iter().flat_map(|c| parsers.map(|p| (c.clone(), p)))
    {
        let parse = || parse(black_box(&bytes), now).map(|e| black_box(e).id);
        if let Err(e) = parse() {
            panic!("{name}: the bench event does not parse: {e}");
        }
        if !measure || !(only.is_empty() || only.iter().any(|o| o == parser)) {
            continue;
        }
        let per_round = (BYTES_PER_ROUND / bytes.len()).max(1);
        let mut samples: Vec<f64> = (0..ROUNDS)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..per_round {
                    let _ = black_box(parse());
                }
                started.elapsed().as_nanos() as f64 / per_round as f64
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        let median = samples[ROUNDS / 2];
        let mib_s = bytes.len() as f64 / median * 1e9 / (1024.0 * 1024.0);
        println!(
            "{parser:>14} {name:>6}: {:>7} bytes  median {:>10.0} ns/event  ({mib_s:.0} MiB/s; min {:.0}, max {:.0})",
            bytes.len(),
            median,
            samples[0],
            samples[ROUNDS - 1]
        );
    }
    let url = "https://crm.example.com/hooks/contact-created?source=hookd";
    let ascii = || hookd_core::webhook::ascii_url(black_box(url));
    assert_eq!(ascii().as_deref(), Some(url));
    if measure && (only.is_empty() || only.iter().any(|o| o == "ascii_url")) {
        const CALLS: u32 = 200_000;
        let mut samples: Vec<f64> = (0..ROUNDS)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..CALLS {
                    black_box(ascii());
                }
                started.elapsed().as_nanos() as f64 / f64::from(CALLS)
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        println!(
            "     ascii_url    url: {:>7} bytes  median {:>10.0} ns/call   (min {:.0}, max {:.0})",
            url.len(),
            samples[ROUNDS / 2],
            samples[0],
            samples[ROUNDS - 1]
        );
    }
}
