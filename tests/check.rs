//! `nestlab check` on captures of real guests (tests/fixtures/captures),
//! and on mutated copies that must fail with exactly the named checks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use nestlab::expect::expect;
use nestlab::observe::Observed;
use nestlab::report::{Report, Status, Verdict};
use nestlab::verify::verify;

fn captures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/captures")
}

/// The fixtures named `debian-<profile>` are captures of the Debian guest
/// kind: checked as that kind (its disk, libvirt's view).
fn check_dir(fixture: &str, dir: &Path) -> Report {
    let (profile, debian) = match fixture.strip_prefix("debian-") {
        Some(p) => (p, true),
        None => (fixture, false),
    };
    let edit = |f: &mut nestlab::front::wire::ProfileFile| {
        if debian {
            f.guest.get_or_insert_with(Default::default).kind = Some("debian".into());
        }
    };
    let p = nestlab::front::parse::load_profile_arg_edited(profile, &edit).unwrap();
    let t = nestlab::resolve::resolve(&p).unwrap();
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
        "cern",
        "hmat",
        "virtio-iommu",
        "pinned",
        "debian-reference",
        "debian-nova-pf-vf",
        "debian-cern",
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
    mutated_in("reference", edit)
}

/// Copies the capture of `profile`, applies `edit` to (file name,
/// content), and returns the report.
fn mutated_in(profile: &str, edit: impl Fn(&str, String) -> Option<String>) -> Report {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(captures().join(profile)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let content = std::fs::read_to_string(&path).unwrap();
        if let Some(c) = edit(&name, content) {
            std::fs::write(dir.path().join(&name), c).unwrap();
        }
    }
    check_dir(profile, dir.path())
}

/// `edit` applied to one file of the capture of `profile`, which must
/// change it; every other file as captured.
fn one_file(profile: &str, file: &str, edit: impl Fn(String) -> String) -> Report {
    let file = file.to_string();
    mutated_in(profile, move |name, c| {
        Some(if name == file {
            let after = edit(c.clone());
            assert_ne!(after, c, "the mutation of {name} changed nothing");
            after
        } else {
            c
        })
    })
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

#[test]
fn a_sibling_moved() {
    let r = one_file("cern", "cpu-topology.txt", |c| {
        c.replace(
            "cpu17/topology/thread_siblings_list:16-17",
            "cpu17/topology/thread_siblings_list:17-18",
        )
    });
    assert_eq!(
        failing(&r),
        set(&["cpu.cpu17.siblings"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn a_thread_on_another_core() {
    let r = one_file("cern", "cpu-topology.txt", |c| {
        c.replace("cpu17/topology/core_id:0", "cpu17/topology/core_id:1")
    });
    assert_eq!(
        failing(&r),
        set(&[
            "cpu.cpu16.core",
            "cpu.cpu17.core",
            "cpu.cpu18.core",
            "cpu.cpu19.core"
        ]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn a_cpu_in_another_socket() {
    let r = one_file("cern", "cpu-topology.txt", |c| {
        c.replace(
            "cpu17/topology/physical_package_id:1",
            "cpu17/topology/physical_package_id:0",
        )
    });
    // Its socket, and the die it now makes with die id 1 in socket 0: the
    // die counts and the die groupings of socket 1 (which lost it) fail.
    let f = failing(&r);
    for id in ["cpu.cpu17.socket", "cpu.cpu17.die", "cpu.dies", "cpu.cores"] {
        assert!(f.contains(id), "{id}: {f:?}");
    }
    assert!(f.iter().all(|id| id.starts_with("cpu.")), "{f:?}");
    assert!(!f.contains("cpu.cpu17.siblings"), "{f:?}");
}

#[test]
fn a_core_split_between_nodes() {
    let r = one_file("cern", "numactl.txt", |c| {
        c.replace(
            "node 0 cpus: 0 1 2 3 4 5 6 7 16 17 18",
            "node 0 cpus: 0 1 2 3 4 5 6 7 16 18",
        )
        .replace("node 1 cpus: 8", "node 1 cpus: 8 17")
    });
    assert_eq!(
        failing(&r),
        set(&[
            "numa.node0.cpus",
            "numa.node1.cpus",
            "cpu.node0.whole_cores",
            "cpu.node1.whole_cores"
        ]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn hugepages_on_the_wrong_node() {
    let r = one_file("cern", "hugepages.txt", |c| {
        c.replace(
            "node0/hugepages/hugepages-1048576kB/nr_hugepages:0",
            "node0/hugepages/hugepages-1048576kB/nr_hugepages:1",
        )
        .replace(
            "node1/hugepages/hugepages-1048576kB/nr_hugepages:1",
            "node1/hugepages/hugepages-1048576kB/nr_hugepages:0",
        )
    });
    assert_eq!(
        failing(&r),
        set(&["hugepages.node0.1048576kB", "hugepages.node1.1048576kB"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn a_latency_changed() {
    let r = one_file("hmat", "hmat.txt", |c| {
        c.replace(
            "node2/access0/initiators/read_latency:100",
            "node2/access0/initiators/read_latency:120",
        )
    });
    assert_eq!(
        failing(&r),
        set(&["hmat.node0.node2.latency"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn a_memory_only_node_reached_from_the_other_initiator() {
    let r = one_file("hmat", "hmat.txt", |c| {
        c.replace(
            "node2/access0/initiators/node0",
            "node2/access0/initiators/node1",
        )
        .replace(
            "node2/access0/initiators/write_bandwidth:4096",
            "node2/access0/initiators/write_bandwidth:2048",
        )
    });
    assert_eq!(
        failing(&r),
        set(&["hmat.node2.initiator", "hmat.node0.node2.bandwidth"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn a_memory_only_node_with_cpus() {
    let r = one_file("hmat", "numactl.txt", |c| {
        c.replace("node 1 cpus: 2 3", "node 1 cpus: 2")
            .replace("node 2 cpus:", "node 2 cpus: 3")
    });
    assert_eq!(
        failing(&r),
        set(&["numa.node1.cpus", "numa.node2.cpus"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn a_vcpu_pinned_off_by_one() {
    let r = one_file("pinned", "host-threads.txt", |c| {
        let tid = c
            .lines()
            .find(|l| l.ends_with("Name:\tCPU 1/TCG"))
            .unwrap()
            .split("/status")
            .next()
            .unwrap()
            .to_string();
        c.replace(
            &format!("{tid}/status:Cpus_allowed_list:\t1"),
            &format!("{tid}/status:Cpus_allowed_list:\t0"),
        )
    });
    assert_eq!(
        failing(&r),
        set(&["tuning.vcpu1.thread"]),
        "{}",
        r.to_human(false)
    );
    let r = one_file("pinned", "host-domain.xml", |c| {
        c.replace(
            "<vcpupin vcpu='1' cpuset='1'/>",
            "<vcpupin vcpu='1' cpuset='0'/>",
        )
    });
    assert_eq!(
        failing(&r),
        set(&["tuning.vcpu1.pin"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn memory_policy_not_applied() {
    let r = one_file("pinned", "host-domain.xml", |c| {
        c.replace(
            "<memory mode='strict' nodeset='0'/>",
            "<memory mode='interleave' nodeset='0'/>",
        )
    });
    assert_eq!(
        failing(&r),
        set(&["tuning.numatune.mode"]),
        "{}",
        r.to_human(false)
    );
    let r = one_file("pinned", "host-threads.txt", |c| {
        c.replacen("Mems_allowed_list:\t0", "Mems_allowed_list:\t0-1", 1)
    });
    assert_eq!(
        failing(&r),
        set(&["tuning.numatune.threads"]),
        "{}",
        r.to_human(false)
    );
    let r = one_file("pinned", "host-threads.txt", |c| {
        c.replacen("Cpus_allowed_list:\t0-1", "Cpus_allowed_list:\t0-3", 1)
    });
    assert_eq!(
        failing(&r),
        set(&["tuning.emulator.thread"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn host_tuning_is_never_judged_from_the_guest() {
    // Without the host's files, every tuning check is skipped, whatever
    // the guest's capture says.
    let r = mutated_in("pinned", |name, c| {
        (!name.starts_with("host-")).then_some(c)
    });
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.to_human(true));
    let tuning: Vec<_> = r
        .checks
        .iter()
        .filter(|c| c.id.starts_with("tuning."))
        .collect();
    assert!(!tuning.is_empty());
    assert!(
        tuning.iter().all(|c| c.status == Status::Skip),
        "{tuning:?}"
    );
}

#[test]
fn virtio_iommu_needs_its_own_evidence() {
    // The Intel IOMMU's DMAR line, no groups: not a virtio IOMMU.
    let r = mutated_in("virtio-iommu", |name, c| match name {
        "dmesg.txt" => Some(c.replace(
            "virtio_iommu virtio0: input address: 39 bits",
            "DMAR: Intel(R) Virtualization Technology for Directed I/O",
        )),
        "iommu-groups.txt" => None,
        _ => Some(c),
    });
    assert_eq!(failing(&r), set(&["iommu.active"]), "{}", r.to_human(false));
}

#[test]
fn virtio_iommu_groups_merged() {
    let r = one_file("virtio-iommu", "iommu-groups.txt", |c| {
        let group_of = |bdf: &str| {
            c.lines()
                .find(|l| l.ends_with(bdf))
                .unwrap()
                .split('/')
                .nth(4)
                .unwrap()
                .to_string()
        };
        let (g2, g3) = (group_of("0000:02:00.0"), group_of("0000:03:00.0"));
        c.replace(
            &format!("/iommu_groups/{g3}/devices/0000:03:00.0"),
            &format!("/iommu_groups/{g2}/devices/0000:03:00.0"),
        )
    });
    assert_eq!(
        failing(&r),
        set(&["iommu.dev.02:00.0.isolated", "iommu.dev.03:00.0.isolated"]),
        "{}",
        r.to_human(false)
    );
}

/// The Debian guest's captures carry libvirt's view; each check of it
/// fails alone when that view is changed.
#[test]
fn debian_captures_check_libvirts_view() {
    let r = check_dir("debian-nova-pf-vf", &captures().join("debian-nova-pf-vf"));
    let ids: BTreeSet<String> = r.checks.iter().map(|c| c.id.clone()).collect();
    for id in [
        "libvirt.cells",
        "libvirt.cell1.cpus",
        "libvirt.cell1.memory",
        "libvirt.distances",
        "libvirt.dev.b5:00.0.numa_node",
        "libvirt.dev.b5:00.0.iommu_group",
        "libvirt.dev.b5:00.0.vfs",
        "libvirt.dev.c9:10.0.pf",
        "libvirt.kvm",
        "nested.dev.nic0.released",
        "nested.dev.nic1.vf0.released",
    ] {
        assert!(ids.contains(id), "{id} not checked");
    }
    // The appliance's view of the same capture has no libvirt checks.
    let r = check_dir("nova-pf-vf", &captures().join("debian-nova-pf-vf"));
    assert!(r.checks.iter().all(|c| !c.id.starts_with("libvirt.")));
}

#[test]
fn libvirt_shows_a_cpu_in_another_cell() {
    let r = one_file("debian-reference", "virsh-capabilities.xml", |c| {
        c.replacen("<cpu id='5' socket_id='5'", "<cpu id='9' socket_id='5'", 1)
    });
    assert_eq!(
        failing(&r),
        set(&["libvirt.cell1.cpus"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn libvirt_shows_other_distances() {
    let r = one_file("debian-reference", "virsh-capabilities.xml", |c| {
        let at = c.find("<cell id='1'>").unwrap();
        let (a, b) = c.split_at(at);
        format!(
            "{a}{}",
            b.replacen(
                "<sibling id='2' value='20'/>",
                "<sibling id='2' value='30'/>",
                1
            )
        )
    });
    assert_eq!(
        failing(&r),
        set(&["libvirt.distances"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn libvirt_puts_a_device_on_another_node() {
    let r = one_file("debian-nova-pf-vf", "virsh-nodedev.xml", |c| {
        let at = c.find("<name>pci_0000_b5_00_0</name>").unwrap();
        let (a, b) = c.split_at(at);
        format!(
            "{a}{}",
            b.replacen("<numa node='0'/>", "<numa node='1'/>", 1)
        )
    });
    assert_eq!(
        failing(&r),
        set(&["libvirt.dev.b5:00.0.numa_node"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn libvirt_groups_a_vf_with_its_pf() {
    let r = one_file("debian-nova-pf-vf", "virsh-nodedev.xml", |c| {
        let at = c.find("<name>pci_0000_b5_10_0</name>").unwrap();
        let (a, b) = c.split_at(at);
        format!(
            "{a}{}",
            b.replacen(
                "</iommuGroup>",
                "  <address domain='0x0000' bus='0xb5' slot='0x00' function='0x0'/>\n    </iommuGroup>",
                1
            )
        )
    });
    assert_eq!(
        failing(&r),
        set(&["libvirt.dev.b5:10.0.iommu_group"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn libvirt_loses_a_vf_and_its_pf() {
    let r = one_file("debian-nova-pf-vf", "virsh-nodedev.xml", |c| {
        let c = c.replacen(
            "      <address domain='0x0000' bus='0xb5' slot='0x10' function='0x2'/>\n    </capability>",
            "    </capability>",
            1,
        );
        let at = c.find("<name>pci_0000_c9_10_0</name>").unwrap();
        let (a, b) = c.split_at(at);
        let b = b.replacen(
            "<capability type='phys_function'>",
            "<capability type='phys_function_gone'>",
            1,
        );
        format!("{a}{b}")
    });
    assert_eq!(
        failing(&r),
        set(&["libvirt.dev.b5:00.0.vfs", "libvirt.dev.c9:10.0.pf"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn libvirt_without_kvm() {
    let r = one_file("debian-reference", "virsh-domcapabilities.xml", |_| {
        "error: failed to get emulator capabilities\nerror: invalid argument: KVM is not supported by '/usr/bin/qemu-system-x86_64' on this host\n".into()
    });
    assert_eq!(failing(&r), set(&["libvirt.kvm"]), "{}", r.to_human(false));
}

#[test]
fn libvirt_shows_a_sibling_moved() {
    let r = one_file("debian-cern", "virsh-capabilities.xml", |c| {
        c.replace(
            "<cpu id='17' socket_id='1' die_id='1' core_id='0' siblings='16-17'/>",
            "<cpu id='17' socket_id='1' die_id='1' core_id='0' siblings='17'/>",
        )
    });
    assert_eq!(
        failing(&r),
        set(&["libvirt.cell0.siblings"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn libvirt_shows_a_cpu_in_another_socket() {
    let r = one_file("debian-cern", "virsh-capabilities.xml", |c| {
        c.replace(
            "<cpu id='17' socket_id='1' die_id='1'",
            "<cpu id='17' socket_id='0' die_id='1'",
        )
    });
    assert_eq!(
        failing(&r),
        set(&["libvirt.cell0.sockets"]),
        "{}",
        r.to_human(false)
    );
}

#[test]
fn libvirt_shows_the_1g_page_on_the_wrong_node() {
    let r = one_file("debian-cern", "virsh-capabilities.xml", |c| {
        c.replacen(
            "<pages unit='KiB' size='1048576'>0</pages>",
            "<pages unit='KiB' size='1048576'>1</pages>",
            1,
        )
        .replacen(
            "<pages unit='KiB' size='1048576'>1</pages>\n          <distances>\n            <sibling id='0' value='20'/>",
            "<pages unit='KiB' size='1048576'>0</pages>\n          <distances>\n            <sibling id='0' value='20'/>",
            1,
        )
    });
    assert_eq!(
        failing(&r),
        set(&[
            "libvirt.cell0.hugepages.1048576kB",
            "libvirt.cell1.hugepages.1048576kB"
        ]),
        "{}",
        r.to_human(false)
    );
}
