//! `nestlab doctor`: what the host behind a libvirt URI can run, and what
//! to do about what it cannot. Everything about that host comes from its
//! libvirt connection (so a remote URI is reported on correctly); only the
//! guest kernel, which the appliance is built from, and the /dev/kvm
//! permissions of a local daemon are looked at on this machine.

use nestlab::host::{is_local_uri, Host, StoreStatus, QEMU_DEVICES};
use nestlab::model::{Accel, AccelChoice};
use nestlab::report::mib;

use crate::args::{HostArgs, KernelArgs};
use crate::common::{open, uris};
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

fn host_lines(uri: &str, pool: &str, lines: &mut Vec<Line>) {
    let host = match open(uri, pool) {
        Ok(h) => h,
        Err(e) if is_local_uri(uri) => {
            lines.push(line(
                false,
                format!("libvirt not reachable at {uri}: {e}"),
                Some("start it: ./dev libvirtd (under tini -s, which reaps QEMU at once), or virtlogd -d; libvirtd -d".into()),
            ));
            return;
        }
        Err(e) => {
            lines.push(line(
                false,
                format!("libvirt not reachable at {uri}: {e}"),
                Some("on that host: libvirtd running with remote access (ssh: a key this user's ssh uses without a prompt, and the remote user in group libvirt; tls: certificates; see the README's \"Hosts for a pool\")".into()),
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
        Accel::Tcg => {
            lines.push(line(
                true,
                "TCG: the virtual host's CPU is QEMU's max model, which offers svm, so it gets a working /dev/kvm (kvm_amd)",
                None,
            ));
            lines.push(line(
                true,
                match facts.tsc_hz() {
                    Some(hz) => format!(
                        "TSC {} MHz: the appliance boots with lpj= (no delay-loop calibration per vCPU)",
                        hz / 1_000_000
                    ),
                    None => "no TSC frequency in its capabilities (libvirt reads it through /dev/kvm): lpj= is left out, each vCPU calibrates its delay loop (a slower boot)".to_string(),
                },
                None,
            ));
        }
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
                            format!(
                                "on that host: modprobe -r {module} && modprobe {module} nested=1"
                            )
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
    store_lines(host.as_ref(), uri, lines);
}

/// Where the host keeps the boot files (remote hosts: a storage pool).
fn store_lines(host: &dyn Host, uri: &str, lines: &mut Vec<Line>) {
    match host.store_status() {
        Ok(StoreStatus::Local) => lines.push(line(
            true,
            "boot files: read from this machine's cache (a local connection: no pool, no upload)",
            None,
        )),
        Ok(StoreStatus::Pool {
            name,
            kind,
            path,
            active,
            volumes,
            bytes,
        }) => lines.push(line(
            true,
            format!(
                "storage pool {name}: {kind} at {path}, {}; {volumes} nestlab volume(s), {:.0} MiB (`nestlab appliance --prune --connect {uri}` removes the unused)",
                if active { "active" } else { "inactive (nestlab starts it)" },
                mib(bytes)
            ),
            None,
        )),
        Ok(StoreStatus::Missing {
            name,
            will_create: Some(path),
        }) => lines.push(line(
            true,
            format!("storage pool {name}: not there yet; the first run creates it (a dir pool at {path})"),
            None,
        )),
        Ok(StoreStatus::Missing {
            name,
            will_create: None,
        }) => lines.push(line(
            false,
            format!("storage pool {name} does not exist on {uri}"),
            Some(format!(
                "virsh -c {uri} pool-define-as {name} dir --target DIR && virsh -c {uri} pool-build {name} && virsh -c {uri} pool-start {name} (or leave out --pool)"
            )),
        )),
        Ok(StoreStatus::Unusable { name, why }) => lines.push(line(
            false,
            format!("storage pool {name}: cannot be used"),
            Some(why),
        )),
        Err(e) => lines.push(line(false, format!("storage pool: {e}"), None)),
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

/// The Debian guest's image for the guest kernel `version`: built (where,
/// how big, how long it took), not built yet, or not buildable here.
fn debian_image_line(version: &str) -> Line {
    let cache = match nestlab::guest::appliance::cache_dir() {
        Ok(c) => c,
        Err(e) => {
            return line(
                false,
                format!("Debian guest image (--guest debian): {e}"),
                Some("set NESTLAB_CACHE_DIR".into()),
            )
        }
    };
    match nestlab::guest::debian::image::find(&cache, version) {
        Ok(Some(img)) => {
            let took = std::fs::read_to_string(img.dir.join("build.txt"))
                .ok()
                .and_then(|b| {
                    b.lines()
                        .find_map(|l| l.strip_prefix("mmdebstrap-seconds ").map(str::to_string))
                })
                .map(|s| format!(", mmdebstrap took {s} s"))
                .unwrap_or_default();
            line(
                true,
                format!(
                    "Debian guest image (--guest debian): {} ({} MiB used{took})",
                    img.root.display(),
                    img.allocated >> 20
                ),
                None,
            )
        }
        Ok(None) => line(
            true,
            format!(
                "Debian guest image (--guest debian): not built yet for kernel {version}; \
                 the first such run or `nestlab image` builds it (1 to 4 minutes, from Debian packages)"
            ),
            None,
        ),
        Err(e) => line(
            false,
            format!("Debian guest image (--guest debian) cannot be built: {e}"),
            Some("apt-get install mmdebstrap e2fsprogs (./dev setup does)".into()),
        ),
    }
}

pub fn main(hosts: &HostArgs, kernel: &KernelArgs) -> u8 {
    let uris = match uris(hosts) {
        Ok(u) => u,
        Err(c) => return c,
    };
    let mut lines = Vec::new();
    for uri in &uris {
        if uris.len() > 1 {
            lines.push(line(true, format!("== {uri}"), None));
        }
        host_lines(uri, &hosts.pool, &mut lines);
    }
    let spec = nestlab::guest::appliance::ApplianceSpec {
        kernel: kernel.kernel.clone(),
        modules_dir: kernel.modules.clone(),
        ..Default::default()
    };
    match nestlab::guest::appliance::locate_kernel(&spec) {
        Ok(k) => {
            let image = debian_image_line(&k.version);
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
            ));
            lines.push(image);
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
