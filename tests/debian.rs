//! The Debian guest kind for real (TCG here): a bookworm virtual host with
//! libvirt inside, checked the way OpenStack Nova sees it, the nested guest
//! assigned through libvirt, the user's command using libvirt there, and
//! `up` leaving a root shell. Needs libvirtd, a guest kernel and mmdebstrap
//! (./dev setup); `./dev test` builds the image before the tests, so that
//! every boot here shares it. Outside CI, finding none, it says it is
//! skipped; with CI=true it fails instead.
//!
//! One test function, so the leak checks at the end see only its own runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::*;

/// The value of `key` in `nestlab image`'s key-value output.
fn field(out: &str, key: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let (k, v) = l.split_once(char::is_whitespace)?;
        (k == key).then(|| v.trim().to_string())
    })
}

/// What a root login on the serial console of `domain` answers to
/// `command`: a terminal for `virsh console` (script(1)), the keystrokes
/// paced for a TCG guest, Ctrl-] to leave.
fn console_answer(domain: &str, command: &str) -> String {
    let keys = format!(
        "sleep 2; printf '\\r'; sleep 8; printf '%s\\r' '{command}'; sleep 25; printf '\\035'"
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "({keys}) | timeout 90 script -qfc 'virsh -c qemu:///system console {domain} --force' /dev/null"
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

#[test]
fn e2e_debian_virtual_host_with_libvirt_inside() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let daemon = Command::new("virsh")
        .args(["-c", "qemu:///system", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let doctor = String::from_utf8_lossy(&nestlab(&["doctor"], here).stdout).into_owned();
    let kernel = doctor.contains("ok   guest kernel");
    let mmdebstrap = Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(daemon && kernel && mmdebstrap) {
        assert!(
            !in_ci(),
            "CI=true but libvirtd ({daemon}), a guest kernel ({kernel}) or mmdebstrap ({mmdebstrap}) is missing"
        );
        eprintln!("SKIPPED: Debian-guest boots need libvirtd, a guest kernel and mmdebstrap (run ./dev setup)");
        return;
    }
    let before_tmp = temp_leftovers();
    let before_domains = domains();
    let work = tempfile::tempdir().unwrap();
    let o = |p: &str| work.path().join(p).display().to_string();

    // 0. The image: built once (./dev test did it), found here in the cache.
    let t0 = Instant::now();
    let img = nestlab(&["image"], here);
    assert_eq!(img.status.code(), Some(0), "{}", show(&img));
    let img_out = String::from_utf8_lossy(&img.stdout).into_owned();
    let image = PathBuf::from(field(&img_out, "image").expect("nestlab image names the image"));
    let stamp = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.len(), m.modified().unwrap())
    };
    let image_before = stamp(&image);
    let sha = |p: &Path| {
        let o = Command::new("sha256sum").arg(p).output().unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let sha_before = sha(&image);
    eprintln!(
        "e2e: nestlab image in {:.1} s: {}",
        t0.elapsed().as_secs_f64(),
        image.display()
    );

    // 1. reference (its e1000e to a nested guest through libvirt),
    // nova-pf-vf (a PF and a VF through libvirt) and cern (SMT siblings and
    // huge pages as libvirt reports them) as Debian guests, two at once.
    let t0 = Instant::now();
    let junit = o("junit.xml");
    let r = nestlab(
        &[
            "run",
            "reference",
            "nova-pf-vf",
            "cern",
            "--guest",
            "debian",
            "--accel",
            "tcg",
            "--jobs",
            "2",
            // Generous: two systemd guests with nested guests share 2 cores.
            "--boot-timeout",
            "900",
            "--probe-timeout",
            "1200",
            "--out",
            &o("ok"),
            "--junit",
            &junit,
            "--json",
        ],
        here,
    );
    eprintln!("{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(r.status.code(), Some(0), "{}", show(&r));
    let reports: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    for rep in reports.as_array().unwrap() {
        assert_eq!(rep["verdict"], "pass", "{rep}");
        eprintln!(
            "e2e: debian {} passed {} checks in {:.1} s",
            rep["profile"],
            rep["checks"].as_array().unwrap().len(),
            rep["seconds"].as_f64().unwrap_or(0.0)
        );
    }
    eprintln!(
        "e2e: three Debian guests, two at once, in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    let report = |p: &str| {
        reports
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["profile"] == p)
            .unwrap_or_else(|| panic!("no report for {p}"))
            .clone()
    };
    let want = [
        ("reference", "libvirt.cells"),
        ("reference", "libvirt.cell1.cpus"),
        ("reference", "libvirt.cell1.memory"),
        ("reference", "libvirt.distances"),
        ("reference", "libvirt.dev.c9:00.0.numa_node"),
        ("reference", "libvirt.dev.c9:00.0.iommu_group"),
        ("reference", "libvirt.kvm"),
        ("reference", "nested.dev.nic8.vfio"),
        ("reference", "nested.dev.nic8.visible"),
        ("reference", "nested.dev.nic8.released"),
        ("nova-pf-vf", "libvirt.dev.b5:00.0.vfs"),
        ("nova-pf-vf", "libvirt.dev.c9:10.0.pf"),
        ("nova-pf-vf", "nested.dev.nic0.released"),
        ("nova-pf-vf", "nested.dev.nic1.vf0.visible"),
        ("cern", "libvirt.cell0.siblings"),
        ("cern", "libvirt.cell1.sockets"),
        ("cern", "libvirt.cell1.hugepages.1048576kB"),
        ("cern", "cpu.cpu17.siblings"),
    ];
    for (p, id) in want {
        assert_eq!(status(&report(p), id), "pass", "{p}: {id}");
    }
    let j = std::fs::read_to_string(&junit).unwrap();
    assert!(j.contains("<testsuite name=\"nova-pf-vf\"") && j.contains("name=\"libvirt.kvm\""));
    for p in ["reference", "nova-pf-vf", "cern"] {
        let cap = o(&format!("ok/{p}/capture"));
        for f in [
            "virsh-capabilities.xml",
            "virsh-nodedev.xml",
            "virsh-domcapabilities.xml",
        ] {
            assert!(Path::new(&cap).join(f).exists(), "{p}: {f} not kept");
        }
        // The kept capture passes again offline, as the Debian kind.
        let again = nestlab(&["check", p, "--guest", "debian", "--from", &cap], here);
        assert_eq!(again.status.code(), Some(0), "{}", show(&again));
        // The nested guest went through libvirt: a managed hostdev in the
        // L2 domain libvirt started (its log is the nested console).
        if p != "cern" {
            let l2 = std::fs::read_to_string(Path::new(&cap).join("nested-console.txt")).unwrap();
            assert!(
                l2.contains("hostdev mode='subsystem' type='pci' managed='yes'"),
                "{p}: the nested guest did not get a managed hostdev:\n{l2}"
            );
        }
    }

    // 2. The reference with the IOMMU off in the guest: exit 1, and only
    // IOMMU checks fail, libvirt's view of the groups among them.
    let off = reference_iommu_off(work.path(), "kind = \"debian\"\n");
    let r = nestlab(
        &[
            "run",
            off.to_str().unwrap(),
            "--accel",
            "tcg",
            "--boot-timeout",
            "900",
            "--probe-timeout",
            "1200",
            "--json",
            "--out",
            &o("off"),
        ],
        here,
    );
    assert_eq!(r.status.code(), Some(1), "{}", show(&r));
    let reports: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let failed = failed_ids(&reports[0]);
    assert!(failed.contains(&"iommu.active".to_string()), "{failed:?}");
    assert!(
        failed
            .iter()
            .any(|id| id.starts_with("libvirt.dev.") && id.ends_with(".iommu_group")),
        "libvirt's groups did not fail: {failed:?}"
    );
    assert!(
        failed.iter().all(|id| id.starts_with("iommu.")
            || (id.starts_with("libvirt.dev.") && id.ends_with(".iommu_group"))),
        "non-IOMMU checks failed: {failed:?}"
    );
    eprintln!(
        "e2e: debian with intel_iommu=off fails exactly {} IOMMU checks (libvirt's groups included)",
        failed.len()
    );

    // 3. The user's own command on the Debian guest, using libvirt there as
    // Nova's code would (python3-libvirt): its output on stdout.
    let r = nestlab(
        &[
            "run",
            "two-socket",
            "--guest",
            "debian",
            "--accel",
            "tcg",
            "--boot-timeout",
            "900",
            "--probe-timeout",
            "1200",
            "--",
            "python3",
            "-c",
            "import libvirt; c = libvirt.open('qemu:///system'); print('libvirt sees', c.getInfo()[4], 'NUMA nodes')",
        ],
        work.path(),
    );
    assert_eq!(r.status.code(), Some(0), "{}", show(&r));
    assert!(
        String::from_utf8_lossy(&r.stdout).contains("libvirt sees 2 NUMA nodes"),
        "{}",
        show(&r)
    );
    eprintln!("e2e: a python3-libvirt command on the Debian guest");

    // 4. up: the verified host stays, libvirtd up, a root shell on the
    // serial console; down removes it.
    let up = nestlab(
        &[
            "up",
            "minimal",
            "--guest",
            "debian",
            "--accel",
            "tcg",
            "--boot-timeout",
            "900",
            "--probe-timeout",
            "1200",
        ],
        here,
    );
    assert_eq!(up.status.code(), Some(0), "{}", show(&up));
    let name = String::from_utf8_lossy(&up.stdout).trim().to_string();
    assert!(name.starts_with("nestlab-minimal-"), "{}", show(&up));
    let answer = console_answer(
        &name,
        "echo NESTLAB-$((6*7)) $(systemctl is-active libvirtd) $(id -un)",
    );
    let down = nestlab(&["down", &name], here);
    assert_eq!(down.status.code(), Some(0), "{}", show(&down));
    assert!(
        answer.contains("NESTLAB-42 active root"),
        "the console did not answer:\n{answer}"
    );
    eprintln!("e2e: up --guest debian: a root shell with libvirtd active on {name}");

    // Nothing left behind; the image not modified by any run.
    assert_eq!(stamp(&image), image_before, "a run modified the image");
    assert_eq!(sha(&image), sha_before, "a run changed the image's content");
    let overlays: Vec<String> = std::fs::read_dir(image.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".TRANSIENT-"))
        .collect();
    assert!(
        overlays.is_empty(),
        "overlays left beside the image: {overlays:?}"
    );
    std::thread::sleep(Duration::from_millis(100));
    let leaked: Vec<String> = domains()
        .into_iter()
        .filter(|d| !before_domains.contains(d))
        .collect();
    assert!(leaked.is_empty(), "domains left: {leaked:?}");
    let after_tmp = temp_leftovers();
    let leaked: Vec<_> = after_tmp
        .iter()
        .filter(|n| !before_tmp.contains(n))
        .collect();
    assert!(leaked.is_empty(), "temporary directories left: {leaked:?}");
}
