//! `nestlab doctor`: what this host can run and why not. Each line says
//! what to do about a problem.

use std::process::Command;

use nestlab::host::libvirt::{Hypervisor, Libvirt};
use nestlab::runner::{choose_accel, host_virt_flag};

use crate::cli::{KernelArgs, EXIT_FAIL, EXIT_OK};
use crate::run::default_uri;

struct Line {
    ok: bool,
    what: String,
    fix: Option<String>,
}

fn line(ok: bool, what: impl Into<String>, fix: Option<&str>) -> Line {
    Line {
        ok,
        what: what.into(),
        fix: fix.map(str::to_string),
    }
}

pub fn cmd_doctor(connect: Option<String>, kernel: &KernelArgs) -> u8 {
    let uri = connect.unwrap_or_else(default_uri);
    let mut lines = Vec::new();
    match Libvirt::connect(&uri) {
        Ok(l) => match l.versions() {
            Ok((lib, hyp)) => lines.push(line(
                true,
                format!("libvirt {lib} reachable at {uri}, QEMU {hyp}"),
                None,
            )),
            Err(e) => lines.push(line(
                false,
                format!("libvirt at {uri}: {e}"),
                Some("restart libvirtd"),
            )),
        },
        Err(e) => lines.push(line(
            false,
            format!("libvirt not reachable: {e}"),
            Some("start it: ./dev libvirtd (under tini -s, which reaps QEMU at once), or virtlogd -d; libvirtd -d"),
        )),
    }
    let qemu = "qemu-system-x86_64";
    match Command::new(qemu).arg("--version").output() {
        Ok(o) => {
            let v = String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            lines.push(line(true, v, None));
            let devs = Command::new(qemu)
                .args(["-device", "help"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for (dev, need) in [
                ("pxb-pcie", "every profile"),
                ("pcie-root-port", "every profile"),
                ("intel-iommu", "profiles with [iommu]"),
                ("e1000e", "e1000e NICs"),
                ("igb", "igb NICs and SR-IOV (QEMU >= 8.0)"),
                ("virtio-net-pci", "virtio NICs"),
            ] {
                let has = devs.contains(&format!("name \"{dev}\""));
                lines.push(line(
                    has,
                    format!(
                        "QEMU device {dev} ({need}): {}",
                        if has { "yes" } else { "missing" }
                    ),
                    (!has).then_some(
                        "install QEMU >= 8.0 (Debian: qemu-system-x86 from bookworm-backports)",
                    ),
                ));
            }
        }
        Err(_) => lines.push(line(
            false,
            "qemu-system-x86_64 not found",
            Some("apt-get install qemu-system-x86 (./dev setup does)"),
        )),
    }
    let (accel, why) = choose_accel();
    lines.push(line(true, format!("accelerator: {accel} ({why})"), None));
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    match std::fs::metadata("/dev/kvm") {
        Ok(m) => {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let mode = m.permissions().mode() & 0o777;
            let group_ok = mode & 0o060 == 0o060;
            lines.push(line(
                group_ok,
                format!("/dev/kvm mode {mode:o} gid {}", m.gid()),
                (!group_ok).then_some("chgrp kvm /dev/kvm && chmod 660 /dev/kvm (else every libvirt start takes ~90 s)"),
            ));
        }
        Err(_) => lines.push(line(
            true,
            "/dev/kvm absent: guests run under TCG (slower, works)",
            None,
        )),
    }
    match host_virt_flag(&cpuinfo) {
        Some(f) => {
            let module = if f == "vmx" { "kvm_intel" } else { "kvm_amd" };
            let nested = std::fs::read_to_string(format!("/sys/module/{module}/parameters/nested")).unwrap_or_default();
            let on = matches!(nested.trim(), "Y" | "1");
            lines.push(line(on, format!("{module} nested: {}", if on { "on" } else { "off" }), (!on).then_some("modprobe -r {module}; modprobe {module} nested=1")));
        }
        None => lines.push(line(true, "host CPU has no vmx/svm: KVM unusable, TCG used (the guest still gets /dev/kvm via -cpu max)", None)),
    }
    let spec = nestlab::guest::appliance::ApplianceSpec {
        kernel: kernel.kernel.clone(),
        modules_dir: kernel.modules.clone(),
        ..Default::default()
    };
    match nestlab::guest::appliance::locate_kernel(&spec) {
        Ok(k) => lines.push(line(
            true,
            format!("guest kernel {} ({})", k.version, k.vmlinuz.display()),
            None,
        )),
        Err(e) => lines.push(line(
            false,
            format!("no guest kernel: {e}"),
            Some("./dev setup fetches one, or pass --kernel"),
        )),
    }
    let mut bad = false;
    for l in &lines {
        println!("{} {}", if l.ok { "ok  " } else { "FAIL" }, l.what);
        if let Some(f) = &l.fix {
            println!("     -> {f}");
            bad = true;
        }
    }
    if bad {
        EXIT_FAIL
    } else {
        EXIT_OK
    }
}
