//! Every config in `examples/` passes `rampart check` with a one-line summary.
//! New files in `examples/*.toml` are picked up automatically.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn example_configs() -> Vec<PathBuf> {
    let dir = repo_root().join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_passes_check() {
    let root = repo_root();
    let files = example_configs();
    for required in [
        "basic.toml",
        "tls-sni.toml",
        "sticky-and-hashing.toml",
        "full.toml",
    ] {
        assert!(
            files
                .iter()
                .any(|f| f.file_name().is_some_and(|n| n == required)),
            "examples/{required} is missing"
        );
    }
    let mut failures = Vec::new();
    for file in &files {
        let relative = file
            .strip_prefix(&root)
            .expect("example under the repository root");
        let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .current_dir(&root)
            .args(["check", "--config"])
            .arg(relative)
            .env_remove("RAMPART_CONFIG")
            .output()
            .expect("run rampart check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stdout.lines().collect();
        let expected_start = format!("{}: ok (", relative.display());
        let ok = out.status.code() == Some(0)
            && lines.len() == 1
            && lines[0].starts_with(&expected_start)
            && lines[0].ends_with(" certificates)")
            && !stderr.contains("panicked");
        if !ok {
            failures.push(format!(
                "{}: exit {:?}\n--- stdout\n{stdout}--- stderr\n{stderr}",
                relative.display(),
                out.status.code()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "examples failing `rampart check`:\n{}",
        failures.join("\n")
    );
}
