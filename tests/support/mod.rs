//! Helpers the end-to-end tests share: running the binary, reading its
//! output, and what a run may leave behind (domains, temporary folders).
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::process::{Command, Output};

/// Whether this is CI (`CI=true`): there a missing daemon or kernel fails
/// a test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `nestlab ARGS` run in `cwd`, its output collected.
pub fn nestlab(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nestlab"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// An output, for an assertion's message.
pub fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The `nestlab-*` domains qemu:///system has, running or defined.
pub fn domains() -> Vec<String> {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system", "list", "--all", "--name"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("nestlab-"))
        .map(str::to_string)
        .collect()
}

/// The run and `up` folders nestlab keeps in the temporary directory.
pub fn temp_leftovers() -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("nestlab-run-") || n.starts_with("nestlab-up-"))
                .collect()
        })
        .unwrap_or_default()
}

/// The status of check `id` in a JSON report.
pub fn status<'a>(report: &'a serde_json::Value, id: &str) -> &'a str {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .and_then(|c| c["status"].as_str())
        .unwrap_or_else(|| panic!("no check {id} in {}", report["profile"]))
}

/// The shipped reference without its nested step (assignment needs the
/// IOMMU this turns off), named `reference-iommu-off`, with
/// `intel_iommu=off` on the guest's command line after the `[guest]` lines
/// `guest` (e.g. `kind = "debian"\n`), written into `dir`.
pub fn reference_iommu_off(dir: &Path, guest: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/reference.toml"),
    )
    .unwrap();
    let off = dir.join("reference-iommu-off.toml");
    std::fs::write(
        &off,
        text.split("[nested]")
            .next()
            .unwrap()
            .replace("name = \"reference\"", "name = \"reference-iommu-off\"")
            + &format!("\n[guest]\n{guest}cmdline_extra = \"intel_iommu=off\"\n"),
    )
    .unwrap();
    off
}

/// The ids of the failed checks of a JSON report.
pub fn failed_ids(report: &serde_json::Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}
