//! `nestlab check` on captures of real guests (tests/fixtures/captures),
//! and on mutated copies that must fail with exactly the named checks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use nestlab::expect::expect;
use nestlab::front::parse::load_profile_arg;
use nestlab::observe::Observed;
use nestlab::report::{Report, Status, Verdict};
use nestlab::verify::verify;

fn captures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/captures")
}

fn check_dir(profile: &str, dir: &Path) -> Report {
    let t = nestlab::resolve::resolve(&load_profile_arg(profile).unwrap()).unwrap();
    let o = Observed::from_dir(dir).unwrap();
    Report::from_checks(profile, verify(&expect(&t), &o), false)
}

fn failing(r: &Report) -> BTreeSet<String> {
    r.checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.id.clone())
        .collect()
}

#[test]
fn real_captures_pass() {
    for p in [
        "minimal",
        "two-socket",
        "sriov",
        "reference",
        "large",
        "nova-pf-vf",
    ] {
        let r = check_dir(p, &captures().join(p));
        assert_eq!(r.verdict, Verdict::Pass, "{p}:\n{}", r.to_human(false));
        assert_eq!(r.counts().2, 0, "{p}: nothing skipped in a full capture");
    }
}

#[test]
fn old_distro_capture_passes_with_skips() {
    let r = check_dir("reference", &captures().join("old-distro-reference"));
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.to_human(true));
    let (passed, failed, skipped) = r.counts();
    assert!(passed >= 20 && failed == 0 && skipped > 0);
    for c in &r.checks {
        if c.id.ends_with(".numa_node") || c.id.starts_with("iommu.") || c.id == "kvm.present" {
            assert_eq!(c.status, Status::Skip, "{}", c.id);
        }
    }
}

/// Copies the reference capture, applies `edit` to (file name, content),
/// and returns the report.
fn mutated(edit: impl Fn(&str, String) -> Option<String>) -> Report {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(captures().join("reference")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let content = std::fs::read_to_string(&path).unwrap();
        if let Some(c) = edit(&name, content) {
            std::fs::write(dir.path().join(&name), c).unwrap();
        }
    }
    check_dir("reference", dir.path())
}

fn drop_lines(content: String, needle: &str) -> String {
    content
        .lines()
        .filter(|l| !l.contains(needle))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_nic_missing() {
    let r = mutated(|name, c| {
        Some(match name {
            "lspci-tree.txt" => c.replace(
                "+-01.0-[b6]----00.0  Intel Corporation 82574L Gigabit Network Connection",
                "+-01.0-[b6]--",
            ),
            _ => drop_lines(c, "0000:b6:00.0"),
        })
    });
    assert_eq!(
        failing(&r),
        set(&[
            "pci.dev.b6:00.0.present",
            "pci.dev.b6:00.0.numa_node",
            "iommu.dev.b6:00.0.isolated"
        ]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn a_nodes_cpus_wrong() {
    let r = mutated(|name, c| {
        Some(if name == "numactl.txt" {
            c.replace("node 1 cpus: 4 5", "node 1 cpus: 4")
        } else {
            c
        })
    });
    assert_eq!(
        failing(&r),
        set(&["numa.node1.cpus"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn a_device_on_the_wrong_node() {
    let r = mutated(|name, c| {
        Some(if name == "pci-numa.txt" {
            c.replace("0000:b5:00.0/numa_node:0", "0000:b5:00.0/numa_node:1")
        } else {
            c
        })
    });
    assert_eq!(
        failing(&r),
        set(&["pci.dev.b5:00.0.numa_node"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn merged_iommu_groups() {
    let r = mutated(|name, c| {
        Some(if name == "iommu-groups.txt" {
            let group_of_b5 = c
                .lines()
                .find(|l| l.ends_with("0000:b5:00.0"))
                .unwrap()
                .split('/')
                .nth(4)
                .unwrap()
                .to_string();
            c.lines()
                .map(|l| {
                    if l.ends_with("0000:b6:00.0") {
                        format!("/sys/kernel/iommu_groups/{group_of_b5}/devices/0000:b6:00.0\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect()
        } else {
            c
        })
    });
    assert_eq!(
        failing(&r),
        set(&["iommu.dev.b5:00.0.isolated", "iommu.dev.b6:00.0.isolated"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn no_dmar_line() {
    // Only "DMAR: IOMMU enabled" (the option was seen) and no groups captured.
    let r = mutated(|name, c| match name {
        "dmesg.txt" => Some(drop_lines(c, "Virtualization Technology for Directed I/O")),
        "iommu-groups.txt" => None,
        _ => Some(c),
    });
    assert_eq!(failing(&r), set(&["iommu.active"]), "{}", r.to_human(false));
    assert!(r
        .checks
        .iter()
        .any(|c| c.id == "iommu.active" && c.observed.contains("IOMMU enabled")));
}

#[test]
fn half_the_memory_fails() {
    let r = mutated(|name, c| {
        Some(if name == "numactl.txt" {
            c.replace("node 1 size: 1969 MB", "node 1 size: 984 MB")
        } else {
            c
        })
    });
    assert_eq!(failing(&r), set(&["numa.node1.memory"]));
}

#[test]
fn an_extra_device_on_an_expander_fails() {
    let r = mutated(|name, c| {
        Some(if name == "lspci.txt" {
            c + "0000:b7:00.1 Ethernet controller [0200]: Intel Corporation 82574L Gigabit Network Connection [8086:10d3]\n"
        } else {
            c
        })
    });
    assert_eq!(failing(&r), set(&["pci.expander.b4.unexpected"]));
}

#[test]
fn reports_snapshot() {
    let r = check_dir("reference", &captures().join("reference"));
    insta::assert_snapshot!("reference-human", r.to_human(true));
    insta::assert_snapshot!("reference-json", r.to_json());
    let m = mutated(|name, c| {
        Some(if name == "numactl.txt" {
            c.replace("node 1 cpus: 4 5", "node 1 cpus: 4")
        } else {
            c
        })
    });
    insta::assert_snapshot!("mutated-cpus-human", m.to_human(false));
}

#[test]
fn cli_exit_codes() {
    let bin = env!("CARGO_BIN_EXE_nestlab");
    let ok = Command::new(bin)
        .args(["check", "reference", "--from"])
        .arg(captures().join("reference"))
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let json = Command::new(bin)
        .args(["check", "reference", "--json", "--from"])
        .arg(captures().join("reference"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["profile"], "reference");
    assert!(v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["id"].is_string() && c["status"].is_string()));
    // Old distro: skips become failures with --require-all.
    let strict = Command::new(bin)
        .args(["check", "reference", "--require-all", "--from"])
        .arg(captures().join("old-distro-reference"))
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(1));
    // The wrong profile for a capture fails.
    let wrong = Command::new(bin)
        .args(["check", "minimal", "--from"])
        .arg(captures().join("reference"))
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    // Unreadable inputs exit 2.
    let missing = Command::new(bin)
        .args(["check", "reference", "--from", "/no/such/dir"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("numactl.txt"), "node 0 cpus: x y z\n").unwrap();
    let garbage = Command::new(bin)
        .args(["check", "reference", "--from"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        garbage.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&garbage.stderr)
    );
    assert!(String::from_utf8_lossy(&garbage.stderr).contains("numactl.txt"));
}

#[test]
fn capture_script_is_posix_sh_and_writes_every_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_nestlab"))
        .arg("capture-script")
        .output()
        .unwrap();
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.starts_with("#!/bin/sh"));
    let files: Vec<&str> = nestlab::capture::in_scope(nestlab::capture::Scope::Topology)
        .map(|c| c.file)
        .collect();
    for f in &files {
        assert!(script.contains(f), "{f} missing from the capture script");
    }
    // Run it on this machine (whatever it has): every file appears, nothing aborts.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.sh");
    std::fs::write(&path, &script).unwrap();
    let target = dir.path().join("cap");
    let st = Command::new("sh").arg(&path).arg(&target).output().unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    for f in &files {
        assert!(target.join(f).exists(), "{f} not written");
    }
}
