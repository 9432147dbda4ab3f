//! The architecture invariants of the README's code map, checked on the source tree (in the
//! spirit of rust-analyzer's `tidy`): which crate may depend on which, where gRPC statuses
//! are made, that the tenancy test covers every public RPC of the compiled contract, and the
//! house rules every file keeps. Each test fails naming each violation and the rule it breaks.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use hookd_tests::contract;

/// The allowed arrows between the workspace's crates (normal dependencies), in the direction
/// of the trip of an event: producer → stream → fan-out → delivery → result → history. A crate
/// not listed here is a violation too: a new crate is a decision for the code map.
const ALLOWED: &[(&str, &[&str])] = &[
    ("hookd-core", &[]),
    ("hookd-proto", &["hookd-core"]),
    ("hookd-storage", &["hookd-core"]),
    ("hookd-nats", &["hookd-core"]),
    ("hookd-egress", &["hookd-core"]),
    ("hookd-metrics", &[]),
    // The web console is a client of the gRPC services: never storage, never the control plane.
    ("hookd-console", &["hookd-core", "hookd-proto"]),
    (
        "hookd-control",
        &[
            "hookd-core",
            "hookd-proto",
            "hookd-storage",
            "hookd-nats",
            "hookd-egress",
            "hookd-metrics",
            "hookd-console",
        ],
    ),
    (
        "hookd-dispatcher",
        &["hookd-core", "hookd-proto", "hookd-nats", "hookd-egress", "hookd-metrics"],
    ),
    ("hookd", &["hookd-core", "hookd-proto", "hookd-control", "hookd-dispatcher"]),
    ("hookd-testpg", &[]),
    ("hookd-tests", &["hookd-core", "hookd-proto", "hookd-testpg"]),
];

/// Test-only crates any crate may use in its dev-dependencies.
const TEST_ONLY: &[&str] = &["hookd-testpg"];

/// External crates with one owner: only the control plane's storage talks to the database.
const OWNED: &[(&str, &str)] =
    &[("sea-orm", "hookd-storage"), ("sea-orm-migration", "hookd-storage")];

/// The one place gRPC statuses are made from errors (the README: "errors mapped to gRPC codes
/// in `error.rs` only").
const STATUS_MAKERS: &[&str] = &["crates/hookd-control/src/error.rs"];

/// `tonic::Status` constructors.
const STATUS_CONSTRUCTORS: &[&str] = &[
    "new",
    "with_details",
    "with_metadata",
    "with_details_and_metadata",
    "from_error",
    "cancelled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_owned()
}

/// Every crate manifest of the workspace: `crates/*/Cargo.toml` and `tests/Cargo.toml`.
fn manifests() -> Vec<(PathBuf, toml::Table)> {
    let root = root();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates/ is readable")
        .flatten()
        .map(|e| e.path().join("Cargo.toml"))
        .filter(|p| p.is_file())
        .collect();
    paths.push(root.join("tests/Cargo.toml"));
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("manifest is readable");
            let table = text.parse::<toml::Table>().expect("manifest is valid TOML");
            (p, table)
        })
        .collect()
}

fn dependency_names(manifest: &toml::Table, section: &str) -> BTreeSet<String> {
    manifest
        .get(section)
        .and_then(toml::Value::as_table)
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

/// Dependency arrows point one way, as the code map draws them; a crate's folder is named
/// after its package; the database crates belong to storage alone.
#[test]
fn crates_depend_only_along_the_allowed_arrows() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut violations = Vec::new();
    for (path, manifest) in manifests() {
        let name = manifest
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let folder = path.parent().and_then(Path::file_name).and_then(|f| f.to_str()).unwrap_or("");
        if folder != "tests" && folder != name {
            violations.push(format!("{}: package {name} lives in folder {folder}", path.display()));
        }
        let Some(arrows) = allowed.get(name.as_str()) else {
            violations.push(format!("{name}: not in the architecture test's map of crates"));
            continue;
        };
        for dependency in dependency_names(&manifest, "dependencies") {
            if dependency.starts_with("hookd") && !arrows.contains(&dependency.as_str()) {
                violations.push(format!("{name} depends on {dependency}: not an allowed arrow"));
            }
            if let Some((_, owner)) = OWNED.iter().find(|(c, _)| *c == dependency)
                && *owner != name
            {
                violations
                    .push(format!("{name} depends on {dependency}, which only {owner} may use"));
            }
        }
        for dependency in dependency_names(&manifest, "dev-dependencies") {
            let internal = dependency.starts_with("hookd");
            if internal
                && !arrows.contains(&dependency.as_str())
                && !TEST_ONLY.contains(&dependency.as_str())
            {
                violations
                    .push(format!("{name} dev-depends on {dependency}: not an allowed arrow"));
            }
        }
    }
    assert!(violations.is_empty(), "dependency rules broken:\n{}", violations.join("\n"));
}

/// Every `.rs` file of the workspace's crates and tests, `target/` excluded.
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == "target") {
                    continue;
                }
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("crates"), &mut out);
    walk(&root().join("tests"), &mut out);
    out.sort();
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

/// The part of a source file that is compiled outside tests: everything before its
/// `#[cfg(test)]` module (the house style keeps it last). Files that are test-only modules
/// (`#[cfg(test)] mod name;` in their parent) count as test code entirely.
fn non_test_code(text: &str) -> &str {
    match text.find("\n#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// Files declared as `#[cfg(test)] mod name;`: test fixtures, not production code.
fn test_only_files() -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for path in sources() {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.windows(2) {
            if pair[0].trim() == "#[cfg(test)]"
                && let Some(name) =
                    pair[1].trim().strip_prefix("mod ").and_then(|r| r.strip_suffix(';'))
            {
                let dir = if path.file_name().is_some_and(|n| n == "lib.rs" || n == "main.rs") {
                    path.parent().map(Path::to_owned)
                } else {
                    path.to_str().and_then(|p| p.strip_suffix(".rs")).map(PathBuf::from)
                };
                if let Some(dir) = dir {
                    out.insert(dir.join(format!("{name}.rs")));
                }
            }
        }
    }
    out
}

/// Whether `code` constructs a `tonic::Status`: `Status::<constructor>(` not preceded by part
/// of another name (`DeliveryStatus::new` is not one).
fn constructs_status(code: &str) -> Option<String> {
    let mut rest = code;
    let mut offset = 0;
    while let Some(at) = rest.find("Status::") {
        let start = offset + at;
        let before = code[..start].chars().next_back();
        let after = &code[start + "Status::".len()..];
        let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let called = after[name.len()..].trim_start().starts_with('(');
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && called
            && STATUS_CONSTRUCTORS.contains(&name.as_str())
        {
            let line = code[..start].lines().count().max(1);
            return Some(format!("line {line}: Status::{name}"));
        }
        rest = &after[name.len()..];
        offset = code.len() - rest.len();
    }
    None
}

/// A gRPC status is made from an error in one place, so every error a user sees has one
/// code and one message format (tests and test fixtures may make their own).
#[test]
fn grpc_statuses_are_made_only_where_errors_are_mapped() {
    let fixtures = test_only_files();
    let mut violations = Vec::new();
    for path in sources() {
        let rel = relative(&path);
        if !rel.starts_with("crates/")
            || rel.contains("/tests/")
            || fixtures.contains(&path)
            || STATUS_MAKERS.contains(&rel.as_str())
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source is readable");
        if let Some(found) = constructs_status(non_test_code(&text)) {
            violations.push(format!("{rel} {found}: map a ControlError instead (error.rs)"));
        }
    }
    assert!(
        violations.is_empty(),
        "statuses made outside error mapping:\n{}",
        violations.join("\n")
    );
}

/// The tenancy matrix (`tests/tests/tenancy.rs`) has a case for every public RPC of the
/// compiled contract: an RPC added without one fails here, before any process starts.
#[test]
fn the_tenancy_matrix_covers_every_public_rpc() {
    let tenancy = std::fs::read_to_string(root().join("tests/tests/tenancy.rs"))
        .expect("tests/tests/tenancy.rs is readable");
    // The cases are the arms of `call`, which makes each RPC: from its start to its end.
    let start = tenancy.find("\nasync fn call(").expect("tenancy.rs has fn call");
    let end = tenancy[start..].find("\n}\n").map_or(tenancy.len(), |e| start + e);
    let cases = &tenancy[start..end];
    let missing: Vec<String> = contract::public_rpcs()
        .into_iter()
        .filter(|rpc| !cases.contains(&format!("\"{}\" =>", rpc.method)))
        .map(|rpc| format!("{}.{}", rpc.service, rpc.method))
        .collect();
    assert!(
        missing.is_empty(),
        "public RPCs without a case in the tenancy matrix (tests/tests/tenancy.rs, fn call):\n{}",
        missing.join("\n")
    );
}

/// Every source file says what it is for on its first line, and modules are `foo.rs` next
/// to `foo/`, never `foo/mod.rs`.
#[test]
fn every_source_file_opens_with_what_it_is_for() {
    let mut violations = Vec::new();
    for path in sources() {
        let rel = relative(&path);
        let text = std::fs::read_to_string(&path).expect("source is readable");
        if !text.starts_with("//!") {
            violations.push(format!("{rel}: does not open with a `//!` line"));
        }
        if path.file_name().is_some_and(|n| n == "mod.rs") {
            violations.push(format!("{rel}: a mod.rs; name it after its module instead"));
        }
    }
    assert!(violations.is_empty(), "house rules broken:\n{}", violations.join("\n"));
}

#[test]
fn the_status_scanner_tells_constructors_from_other_names() {
    assert!(constructs_status("Err(Status::unavailable(\"x\"))").is_some());
    assert!(constructs_status("tonic::Status::new(code, m)").is_some());
    assert!(constructs_status("DeliveryStatus::Pending").is_none());
    assert!(constructs_status("ServingStatus::NotServing").is_none());
    assert!(constructs_status("v1::DeliveryStatus::from(s)").is_none());
    assert!(constructs_status("fn f() -> Result<(), Status> { Ok(()) }").is_none());
}
