//! Every shipped profile's XML passes libvirt's own schema
//! (`virt-xml-validate FILE domain`) and a running libvirtd turns it into a
//! QEMU command line (`virsh domxml-to-native qemu-argv`).
//!
//! Needs libvirt's tools and daemon. Outside CI, finding none, the tests say
//! they are skipped and why; with `CI=true` they fail instead.

use std::path::Path;
use std::process::Command;

use nestlab::front::parse::{load_profile_arg, SHIPPED};
use nestlab::model::Accel;
use nestlab::xml::render::{render, BootSpec};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Ok(()) when the tool answers; otherwise skip (or fail in CI).
fn require(what: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    assert!(!in_ci(), "CI=true but {what} is not available");
    eprintln!("SKIPPED: {what} is not available (run ./dev setup)");
    false
}

fn uri() -> String {
    std::env::var("NESTLAB_CONNECT").unwrap_or_else(|_| "qemu:///system".into())
}

fn render_to(dir: &Path, name: &str, accel: Accel) -> std::path::PathBuf {
    let t = nestlab::resolve::resolve(&load_profile_arg(name).unwrap()).unwrap();
    let xml = render(&t, accel, &BootSpec::placeholder())
        .to_xml()
        .unwrap();
    let path = dir.join(format!("{name}-{accel}.xml"));
    std::fs::write(&path, xml).unwrap();
    path
}

#[test]
fn schema_accepts_every_shipped_profile() {
    let have = Command::new("virt-xml-validate")
        .arg("--help")
        .output()
        .is_ok();
    if !require("virt-xml-validate", have) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, _) in SHIPPED {
        for accel in [Accel::Kvm, Accel::Tcg] {
            let path = render_to(dir.path(), name, accel);
            let out = Command::new("virt-xml-validate")
                .arg(&path)
                .arg("domain")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name} ({accel}) fails libvirt's schema:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("schema ok: {name} ({accel})");
        }
    }
}

fn to_native(path: &Path) -> Result<String, String> {
    let out = Command::new("virsh")
        .args(["-c", &uri(), "domxml-to-native", "qemu-argv"])
        .arg(path)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn libvirtd_up() -> bool {
    Command::new("virsh")
        .args(["-c", &uri(), "version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn libvirtd_accepts_every_shipped_profile() {
    if !require("a libvirtd answering on qemu:///system", libvirtd_up()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, _) in SHIPPED {
        for accel in [Accel::Kvm, Accel::Tcg] {
            let path = render_to(dir.path(), name, accel);
            let argv = to_native(&path)
                .unwrap_or_else(|e| panic!("libvirtd refuses {name} ({accel}): {e}"));
            assert!(argv.contains("-machine pc-q35"), "{name}: {argv}");
            eprintln!("libvirtd ok: {name} ({accel})");
        }
    }
}

#[test]
fn reference_qemu_command_line_has_the_recipe() {
    if !require("a libvirtd answering on qemu:///system", libvirtd_up()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let argv = to_native(&render_to(dir.path(), "reference", Accel::Tcg)).unwrap();
    for (bus, node) in [(180, 0), (200, 1), (220, 2)] {
        let want = format!("\"driver\":\"pxb-pcie\",\"bus_nr\":{bus},");
        let line = argv
            .split(" -device ")
            .find(|d| d.contains(&want))
            .unwrap_or_else(|| panic!("no pxb-pcie bus_nr {bus}: {argv}"));
        assert!(line.contains(&format!("\"numa_node\":{node}")), "{line}");
    }
    assert_eq!(argv.matches("\"driver\":\"e1000e\"").count(), 9, "{argv}");
    assert_eq!(
        argv.matches("\"driver\":\"pcie-root-port\"").count(),
        9,
        "{argv}"
    );
    let iommu = argv
        .split(" -device ")
        .find(|d| d.contains("intel-iommu"))
        .expect("no intel-iommu");
    assert!(iommu.contains("\"intremap\":\"on\""), "{iommu}");
    assert!(iommu.contains("\"caching-mode\":true"), "{iommu}");
    assert!(
        argv.contains("kernel_irqchip=split"),
        "no split irqchip: {argv}"
    );
    assert!(argv.contains("usb=off"), "{argv}");
    assert!(
        !argv.contains("xhci") && !argv.contains("ich9-usb"),
        "a USB controller crept in: {argv}"
    );
    assert!(
        !argv.contains("virtio-balloon"),
        "a balloon crept in: {argv}"
    );
    assert!(argv.contains("-accel tcg"));
}
