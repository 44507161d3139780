//! `nestlab doctor`: what the host behind a libvirt URI can run, and what
//! to do about what it cannot. Everything about that host comes from its
//! libvirt connection (so a remote URI is reported on correctly); only the
//! guest kernel, which the appliance is built from, and the /dev/kvm
//! permissions of a local daemon are looked at on this machine.

use nestlab::host::{is_local_uri, QEMU_DEVICES};
use nestlab::model::{Accel, AccelChoice};

use crate::args::KernelArgs;
use crate::common::{connect, default_uri};
use crate::exit;

struct Line {
    ok: bool,
    what: String,
    fix: Option<String>,
}

fn line(ok: bool, what: impl Into<String>, fix: Option<String>) -> Line {
    Line {
        ok,
        what: what.into(),
        fix,
    }
}

/// What each QEMU device is needed for.
fn need(dev: &str) -> &'static str {
    match dev {
        "pxb-pcie" | "pcie-root-port" => "every profile",
        "intel-iommu" => "profiles with [iommu]",
        "e1000e" => "e1000e NICs",
        "igb" => "igb NICs and SR-IOV",
        "virtio-net-pci" => "virtio NICs",
        _ => "some profiles",
    }
}

fn host_lines(uri: &str, lines: &mut Vec<Line>) {
    let host = match connect(uri) {
        Ok(h) => h,
        Err(_) => {
            lines.push(line(
                false,
                format!("libvirt not reachable at {uri}"),
                Some("start it: ./dev libvirtd (under tini -s, which reaps QEMU at once), or virtlogd -d; libvirtd -d".into()),
            ));
            return;
        }
    };
    let facts = match host.facts() {
        Ok(f) => f,
        Err(e) => {
            lines.push(line(
                false,
                format!("libvirt at {uri}: {e}"),
                Some("restart libvirtd".into()),
            ));
            return;
        }
    };
    lines.push(line(
        true,
        format!(
            "libvirt {} reachable at {uri}, QEMU {}; {} CPUs, {} MiB in {} NUMA cell(s)",
            facts.libvirt,
            facts.qemu,
            facts.cpus(),
            facts.caps.memory_kib() / 1024,
            facts.caps.cells.len()
        ),
        None,
    ));
    for d in QEMU_DEVICES {
        let has = facts.has_device(d.name);
        lines.push(line(
            has,
            format!(
                "QEMU device {} ({}): {}",
                d.name,
                need(d.name),
                if has { "yes" } else { "missing" }
            ),
            (!has).then(|| {
                format!(
                    "install QEMU >= {}.{} (Debian: qemu-system-x86 from bookworm-backports)",
                    d.since.0, d.since.1
                )
            }),
        ));
    }
    let (accel, why) = facts.choose_accel(AccelChoice::Auto);
    lines.push(line(true, format!("accelerator: {accel} ({why})"), None));
    match accel {
        Accel::Tcg => lines.push(line(
            true,
            "TCG: the virtual host's CPU is QEMU's max model, which offers svm, so it gets a working /dev/kvm (kvm_amd)",
            None,
        )),
        Accel::Kvm => {
            let module = match facts.caps.virt_flag() {
                Some("vmx") => "kvm_intel",
                _ => "kvm_amd",
            };
            match host.domain_caps("kvm") {
                Ok(d) => {
                    let on = d.nested_flag().is_some();
                    lines.push(line(
                        on,
                        format!(
                            "nested virtualisation: {} (the host-model CPU {} vmx/svm)",
                            if on { "on" } else { "off" },
                            if on { "offers" } else { "lacks" }
                        ),
                        (!on).then(|| {
                            format!("on that host: modprobe -r {module} && modprobe {module} nested=1")
                        }),
                    ));
                }
                Err(e) => lines.push(line(false, format!("KVM domain capabilities: {e}"), None)),
            }
        }
    }
    if is_local_uri(uri) {
        kvm_permissions(lines);
    }
}

/// A local daemon's pitfall: /dev/kvm root:root 0600 makes libvirt drop its
/// capability cache on every domain start (~90 s each).
fn kvm_permissions(lines: &mut Vec<Line>) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    match std::fs::metadata("/dev/kvm") {
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            let group_ok = mode & 0o060 == 0o060;
            lines.push(line(
                group_ok,
                format!("/dev/kvm mode {mode:o} gid {}", m.gid()),
                (!group_ok).then(|| {
                    "chgrp kvm /dev/kvm && chmod 660 /dev/kvm (else every libvirt start takes ~90 s)"
                        .to_string()
                }),
            ));
        }
        Err(_) => lines.push(line(
            true,
            "/dev/kvm absent: guests run under TCG (slower, works)",
            None,
        )),
    }
}

pub fn main(connect_uri: Option<String>, kernel: &KernelArgs) -> u8 {
    let uri = connect_uri.unwrap_or_else(default_uri);
    let mut lines = Vec::new();
    host_lines(&uri, &mut lines);
    let spec = nestlab::guest::appliance::ApplianceSpec {
        kernel: kernel.kernel.clone(),
        modules_dir: kernel.modules.clone(),
        ..Default::default()
    };
    match nestlab::guest::appliance::locate_kernel(&spec) {
        Ok(k) => {
            let old = nestlab::guest::kernel_release(&k.version).is_some_and(|r| r < (6, 9));
            lines.push(line(
                true,
                format!(
                    "guest kernel {} ({}){}",
                    k.version,
                    k.vmlinuz.display(),
                    if old {
                        "; older than 6.9: profiles with SMT siblings under TCG or a virtio IOMMU \
                         are skipped (./dev setup fetches Debian's 6.12)"
                    } else {
                        ""
                    }
                ),
                None,
            ))
        }
        Err(e) => lines.push(line(
            false,
            format!("no guest kernel: {e}"),
            Some("./dev setup fetches one, or pass --kernel".into()),
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
        exit::FAIL
    } else {
        exit::OK
    }
}
