//! Architecture invariants that a compiler does not check (see ARCHITECTURE.md).

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn files_mentioning(dir: &str, needle: &str, skip: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join(dir), &mut files);
    files
        .into_iter()
        .filter(|f| !skip.iter().any(|s| f.starts_with(root.join(s))))
        .filter(|f| std::fs::read_to_string(f).unwrap().contains(needle))
        .map(|f| f.strip_prefix(root).unwrap().display().to_string())
        .collect()
}

#[test]
fn the_control_plane_library_never_uses_the_agent() {
    let offenders = files_mentioning("control-plane/src", "droidfleet_agent", &[]);
    assert!(
        offenders.is_empty(),
        "library files using the agent: {offenders:?}"
    );
}

#[test]
fn the_agent_never_uses_the_control_plane() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("agent/Cargo.toml"))
            .unwrap();
    let dependencies = manifest.split("[dependencies]").nth(1).unwrap();
    assert!(
        !dependencies
            .lines()
            .any(|l| l.trim_start().starts_with("droidfleet-control-plane")
                || l.trim_start().starts_with("droidfleet-tools"))
    );
    let offenders = files_mentioning("agent/src", "droidfleet_control_plane::", &[]);
    assert!(
        offenders.is_empty(),
        "agent files using the control plane: {offenders:?}"
    );
}

#[test]
fn only_the_grpc_edges_know_protobuf() {
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

#[test]
fn every_crate_root_forbids_unsafe_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "control-plane/src/lib.rs",
        "src/main.rs",
        "tools/src/lib.rs",
        "proto/src/lib.rs",
        "agent/src/lib.rs",
        "agent/src/main.rs",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(
            text.starts_with("//!"),
            "{file} opens with a //! purpose line"
        );
        assert!(
            text.contains("#![forbid(unsafe_code)]"),
            "{file} forbids unsafe code"
        );
    }
}
