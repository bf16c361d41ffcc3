//! Golden tests of `rampart check` on invalid configs, and hostile input files.
//!
//! Each `tests/golden/NAME.toml` is checked with the golden directory as the working directory
//! and the bare file name as the argument, so the output names `NAME.toml:LINE:COL`. Its stdout
//! must equal `tests/golden/NAME.out` byte for byte and the exit status must be 1.
//! Regenerate the expected outputs with `RAMPART_BLESS=1 cargo test -p rampart --test golden`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn check(dir: &Path, file: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .current_dir(dir)
        .args(["check", "--config", file])
        .env_remove("RAMPART_CONFIG")
        .output()
        .expect("run rampart check")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn golden_check_output() {
    let dir = golden_dir();
    let bless = std::env::var_os("RAMPART_BLESS").is_some_and(|v| v == "1");
    let mut inputs: Vec<String> = std::fs::read_dir(&dir)
        .expect("list tests/golden")
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".toml"))
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 14,
        "expected at least 14 golden configs, found {}",
        inputs.len()
    );

    let mut failures = Vec::new();
    for name in &inputs {
        let out = check(&dir, name);
        let stdout = text(&out.stdout);
        let stderr = text(&out.stderr);
        let expected_path = dir.join(name.replace(".toml", ".out"));
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{name}: exit status {:?}, expected 1\n{stdout}{stderr}",
                out.status.code()
            ));
        }
        if stdout.contains("panicked") || stderr.contains("panicked") {
            failures.push(format!("{name}: panicked\n{stderr}"));
        }
        if !stdout.ends_with(" error(s)\n") {
            failures.push(format!(
                "{name}: the last line is not the error count:\n{stdout}"
            ));
        }
        if bless {
            std::fs::write(&expected_path, &stdout).expect("write golden output");
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == stdout => {}
            Ok(expected) => failures.push(format!(
                "{name}: output differs from {}\n--- expected\n{expected}--- actual\n{stdout}",
                expected_path.file_name().unwrap().to_string_lossy()
            )),
            Err(e) => failures.push(format!(
                "{name}: cannot read {}: {e} (run with RAMPART_BLESS=1 to create it)\n--- actual\n{stdout}",
                expected_path.display()
            )),
        }
    }
    // Every expected output belongs to an input: no stale goldens.
    for entry in std::fs::read_dir(&dir).expect("list tests/golden") {
        let name = entry
            .expect("directory entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some(stem) = name.strip_suffix(".out")
            && !inputs.contains(&format!("{stem}.toml"))
        {
            failures.push(format!("{name}: no {stem}.toml next to it"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_error_is_listed_with_position() {
    // The combined case lists each error on its own line as FILE:LINE:COL: path: message.
    let out = check(&golden_dir(), "ten-errors.toml");
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let (count_line, errors) = lines.split_last().expect("output");
    assert!(errors.len() >= 10, "expected at least 10 errors:\n{stdout}");
    assert_eq!(
        *count_line,
        format!("ten-errors.toml: {} error(s)", errors.len())
    );
    for line in errors {
        let rest = line
            .strip_prefix("ten-errors.toml:")
            .unwrap_or_else(|| panic!("no file name: {line}"));
        let mut parts = rest.splitn(3, ':');
        let line_no: usize = parts
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("no line: {line}"));
        let col: usize = parts
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("no column: {line}"));
        assert!(line_no > 1 && col >= 1, "{line}");
    }
}

/// Runs check on a generated file and returns stdout + stderr after the common assertions.
fn hostile(dir: &Path, name: &str) -> String {
    let out = check(dir, name);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{name}: expected exit 1\n{all}");
    assert!(!all.contains("panicked"), "{name}: panicked\n{all}");
    assert!(
        all.contains(&format!("{name}: 1 error(s)")),
        "{name}: no error count\n{all}"
    );
    all
}

#[test]
fn empty_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("empty.toml"), "").unwrap();
    let out = hostile(tmp.path(), "empty.toml");
    assert!(out.contains("at least one listener is required"), "{out}");
}

#[test]
fn binary_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    // Deterministic bytes that are not UTF-8 (0xff never occurs in UTF-8), with NULs mixed in.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
        .chain([0xff, 0, 0xfe])
        .collect();
    std::fs::write(tmp.path().join("garbage.toml"), garbage).unwrap();
    let out = hostile(tmp.path(), "garbage.toml");
    assert!(out.contains("not valid UTF-8"), "{out}");
}

#[test]
fn huge_file_is_rejected_by_size() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("huge.toml");
    // 20 MiB of valid TOML comments, so only the size limit can reject it.
    let line = format!("# {}\n", "x".repeat(1021));
    let block = line.repeat(1024); // 1 MiB
    let mut data = String::with_capacity(20 << 20);
    for _ in 0..20 {
        data.push_str(&block);
    }
    std::fs::write(&path, data).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 20 << 20);
    let started = std::time::Instant::now();
    let out = hostile(tmp.path(), "huge.toml");
    assert!(out.contains("byte limit"), "{out}");
    assert!(
        out.contains(&(20u64 << 20).to_string()),
        "the message names the size: {out}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "rejecting by size must not read the file"
    );
}

#[test]
fn deeply_nested_arrays() {
    let tmp = tempfile::tempdir().unwrap();
    let depth = 100_000;
    let doc = format!("x = {}{}\n", "[".repeat(depth), "]".repeat(depth));
    std::fs::write(tmp.path().join("nested.toml"), doc).unwrap();
    let out = hostile(tmp.path(), "nested.toml");
    assert!(
        out.contains("nested.toml:1:"),
        "the error has a position: {out}"
    );
    assert!(out.contains("TOML syntax error"), "{out}");
}

#[test]
fn deeply_nested_inline_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let depth = 50_000;
    let doc = format!("x = {}1{}\n", "{ a = ".repeat(depth), " }".repeat(depth));
    std::fs::write(tmp.path().join("tables.toml"), doc).unwrap();
    let out = hostile(tmp.path(), "tables.toml");
    assert!(out.contains("TOML syntax error"), "{out}");
}
