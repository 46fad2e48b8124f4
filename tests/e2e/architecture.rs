//! Architecture invariants (see ARCHITECTURE.md). Which workspace package may depend on which is
//! read from `cargo metadata`: once a manifest leaves a package out, the compiler refuses any use
//! of it. The lint and crate-root conventions are read from each package's manifest and crate
//! roots. Which modules inside a package may use the protobuf types is beyond the compiler, so
//! that is checked on the source text.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Crates only the command-line front ends need (argument parsing, progress bars, report charts,
/// log output, `anyhow` errors); the control-plane library is used without them.
const CLI_ONLY: &[&str] = &[
    "clap",
    "humantime",
    "plotters",
    "tracing-subscriber",
    "anyhow",
    "indicatif",
];

/// Every dependency kind: the package's own code, its build script and its tests.
const ANY_KIND: &[&str] = &["normal", "build", "dev"];

/// The kinds that reach a library's users (a dev-dependency serves only its own tests).
const SHIPPED_KINDS: &[&str] = &["normal", "build"];

/// Target kinds whose `src_path` is a library or binary crate root.
const CRATE_ROOT_KINDS: &[&str] = &[
    "lib",
    "rlib",
    "dylib",
    "cdylib",
    "staticlib",
    "proc-macro",
    "bin",
];

/// A workspace package, as `cargo metadata` describes it.
struct Package {
    name: String,
    manifest_path: PathBuf,
    dependencies: Vec<Dependency>,
    /// The crate roots of its library and binary targets.
    crate_roots: Vec<PathBuf>,
}

struct Dependency {
    /// The depended-on package's name (under a `package = …` rename, still the real name).
    name: String,
    /// `normal`, `build` or `dev`.
    kind: String,
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `path` relative to the workspace root, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The workspace's packages, from `cargo metadata --no-deps` (which lists the members only).
fn workspace() -> &'static [Package] {
    static PACKAGES: OnceLock<Vec<Package>> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        let output = std::process::Command::new(env!("CARGO"))
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .arg("--manifest-path")
            .arg(workspace_root().join("Cargo.toml"))
            .output()
            .expect("cargo metadata starts");
        assert!(
            output.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: Value =
            serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
        list(&metadata["packages"], "packages")
            .iter()
            .map(|package| Package {
                name: text(&package["name"], "a package's name").to_string(),
                manifest_path: text(&package["manifest_path"], "a manifest_path").into(),
                dependencies: list(&package["dependencies"], "dependencies")
                    .iter()
                    .map(|dependency| Dependency {
                        name: text(&dependency["name"], "a dependency's name").to_string(),
                        kind: match &dependency["kind"] {
                            Value::Null => "normal".to_string(),
                            kind => text(kind, "a dependency's kind").to_string(),
                        },
                    })
                    .collect(),
                crate_roots: list(&package["targets"], "targets")
                    .iter()
                    .filter(|target| {
                        list(&target["kind"], "a target's kind")
                            .iter()
                            .any(|kind| CRATE_ROOT_KINDS.contains(&text(kind, "a target kind")))
                    })
                    .map(|target| text(&target["src_path"], "a src_path").into())
                    .collect(),
            })
            .collect()
    })
}

fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("cargo metadata: {what} is not a string: {value}"))
}

fn list<'a>(value: &'a Value, what: &str) -> &'a [Value] {
    value
        .as_array()
        .unwrap_or_else(|| panic!("cargo metadata: {what} is not a list: {value}"))
}

fn package(name: &str) -> &'static Package {
    workspace()
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("cargo metadata lists no workspace package {name}"))
}

/// `package`'s dependencies of one of `kinds` on one of `names`, as "from -> to (kind)".
fn dependencies_on(package: &Package, names: &[&str], kinds: &[&str]) -> Vec<String> {
    package
        .dependencies
        .iter()
        .filter(|d| names.contains(&d.name.as_str()) && kinds.contains(&d.kind.as_str()))
        .map(|d| format!("{} -> {} ({})", package.name, d.name, d.kind))
        .collect()
}

/// Whether a manifest inherits the workspace lints: `workspace = true` under `[lints]`, or
/// `lints.workspace = true` / `lints = { workspace = true }` before the first table.
fn inherits_workspace_lints(manifest: &str) -> bool {
    let mut table: Option<String> = None;
    for line in manifest.lines() {
        let line: String = line
            .split('#')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if line.starts_with('[') {
            table = Some(line);
            continue;
        }
        let inherits = match table.as_deref() {
            None => line == "lints.workspace=true" || line == "lints={workspace=true}",
            Some("[lints]") => line == "workspace=true",
            Some(_) => false,
        };
        if inherits {
            return true;
        }
    }
    false
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `.rs` files under `dir` (outside `skip`) whose text contains `needle`.
fn files_mentioning(dir: &str, needle: &str, skip: &[&str]) -> Vec<String> {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root.join(dir), &mut files);
    files
        .into_iter()
        .filter(|f| !skip.iter().any(|s| f.starts_with(root.join(s))))
        .filter(|f| std::fs::read_to_string(f).unwrap().contains(needle))
        .map(|f| shown(&f))
        .collect()
}

/// The control-plane library stands alone: no agent, no tools, none of the CLI's crates.
#[test]
fn the_control_plane_library_never_uses_the_agent() {
    let control_plane = package("droidfleet-control-plane");
    let mut offenders = dependencies_on(
        control_plane,
        &["droidfleet-agent", "droidfleet-tools", "droidfleet-console"],
        ANY_KIND,
    );
    offenders.extend(dependencies_on(control_plane, CLI_ONLY, SHIPPED_KINDS));
    assert!(
        offenders.is_empty(),
        "the control-plane library depends on the agent, the tools or a CLI-only crate: \
         {offenders:?}"
    );
}

/// The console is one more client of the admin API, served in the control plane's process: it
/// may link the control plane (to serve its `AdminApi` in-process) and the proto, nothing else of
/// ours, and none of the CLI's crates; and it never opens the store or reads the rules itself,
/// so every page and button is an admin call, checked and audited by `admin_call`.
#[test]
fn the_console_reaches_the_control_plane_only_through_its_admin_api() {
    let console = package("droidfleet-console");
    let mut offenders = dependencies_on(
        console,
        &["droidfleet-agent", "droidfleet-tools", "droidfleet"],
        ANY_KIND,
    );
    offenders.extend(dependencies_on(console, CLI_ONLY, SHIPPED_KINDS));
    assert!(
        offenders.is_empty(),
        "the console depends on more than the control plane and the proto: {offenders:?}"
    );
    let mut bypasses = Vec::new();
    for internal in [
        "droidfleet_control_plane::store",
        "droidfleet_control_plane::rbac",
        "droidfleet_control_plane::crypto",
        "SqliteStore",
    ] {
        bypasses.extend(
            files_mentioning("console/src", internal, &[])
                .into_iter()
                .map(|file| format!("{file} uses {internal}")),
        );
    }
    assert!(
        bypasses.is_empty(),
        "console files reaching past the admin API: {bypasses:?}"
    );
    assert!(
        !files_mentioning("console/src", "AdminApi", &[]).is_empty(),
        "the console calls the admin API"
    );
}

/// The agent speaks only the proto; it meets the control plane only in the root package's
/// end-to-end tests.
#[test]
fn the_agent_never_uses_the_control_plane() {
    let offenders = dependencies_on(
        package("droidfleet-agent"),
        &["droidfleet-control-plane", "droidfleet-tools"],
        ANY_KIND,
    );
    assert!(
        offenders.is_empty(),
        "the agent depends on the control plane or the tools: {offenders:?}"
    );
}

/// The proto is the bottom layer, and inside the control plane and the agent only the gRPC edges
/// convert to and from it.
#[test]
fn only_the_grpc_edges_know_protobuf() {
    let others: Vec<&str> = workspace()
        .iter()
        .map(|p| p.name.as_str())
        .filter(|name| *name != "droidfleet-proto")
        .collect();
    let proto = dependencies_on(package("droidfleet-proto"), &others, ANY_KIND);
    assert!(
        proto.is_empty(),
        "the proto depends on another workspace package: {proto:?}"
    );
    let control_plane = files_mentioning(
        "control-plane/src",
        "droidfleet_proto",
        &["control-plane/src/grpc", "control-plane/src/server.rs"],
    );
    assert!(
        control_plane.is_empty(),
        "control-plane domain files using protobuf: {control_plane:?}"
    );
    let device_model = files_mentioning("agent/src/device", "droidfleet_proto", &[]);
    assert!(
        device_model.is_empty(),
        "device-model files using protobuf: {device_model:?}"
    );
}

/// Every package inherits the workspace lints, and every library and binary crate root opens
/// with a `//!` purpose and forbids unsafe code.
#[test]
fn every_crate_root_forbids_unsafe_code() {
    let mut offenders = Vec::new();
    let mut roots = 0;
    for package in workspace() {
        let manifest = std::fs::read_to_string(&package.manifest_path).unwrap();
        if !inherits_workspace_lints(&manifest) {
            offenders.push(format!(
                "{} does not set lints.workspace = true",
                shown(&package.manifest_path)
            ));
        }
        for root in &package.crate_roots {
            roots += 1;
            let text = std::fs::read_to_string(root).unwrap();
            if !text.starts_with("//!") {
                offenders.push(format!("{} does not open with a //! purpose", shown(root)));
            }
            if !text.contains("#![forbid(unsafe_code)]") {
                offenders.push(format!("{} lacks #![forbid(unsafe_code)]", shown(root)));
            }
        }
    }
    assert!(roots > 0, "cargo metadata lists no crate root");
    assert!(offenders.is_empty(), "{offenders:#?}");
}
