//! libvirt's view inside a virtual host with libvirt (the Debian guest
//! kind), as OpenStack Nova reads it: `virsh capabilities` (cells, their
//! CPUs, memory, distances), `virsh nodedev-dumpxml` of each assignable
//! device (NUMA node, IOMMU group, SR-IOV functions) and `virsh
//! domcapabilities` (KVM).

use super::{memory_floor_mib, not_captured};
use crate::capture;
use crate::expect::{DeviceKind, Expected};
use crate::model::Bytes;
use crate::observe::Observed;
use crate::report::Check;

fn cells(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    let why = not_captured(&capture::VIRSH_CAPABILITIES);
    let Some(caps) = &o.libvirt_caps else {
        out.push(Check::skip(
            "libvirt.cells",
            format!("{} cells", e.nodes.len()),
            why.clone(),
        ));
        for n in &e.nodes {
            for what in ["cpus", "memory"] {
                out.push(Check::skip(
                    format!("libvirt.cell{}.{what}", n.id),
                    "",
                    why.clone(),
                ));
            }
        }
        out.push(Check::skip("libvirt.distances", "distance matrix", why));
        return;
    };
    let got = caps.cells.len();
    out.push(Check::judge(
        "libvirt.cells",
        got == e.nodes.len(),
        format!("{} cells", e.nodes.len()),
        format!("{got} cells"),
        if got == e.nodes.len() {
            "libvirt reports the NUMA cells asked for".to_string()
        } else {
            format!(
                "libvirt reports {got} NUMA cells, the profile asks for {}",
                e.nodes.len()
            )
        },
    ));
    for n in &e.nodes {
        let cell = caps.cells.iter().find(|c| c.id == n.id.0);
        let cpus = cell.map(|c| c.cpu_set());
        let ok = cpus.as_ref() == Some(&n.cpus);
        out.push(Check::judge(
            format!("libvirt.cell{}.cpus", n.id),
            ok,
            format!("CPUs {}", n.cpus),
            match &cpus {
                None => "no such cell".to_string(),
                Some(c) if c.is_empty() => "no CPUs".to_string(),
                Some(c) => format!("CPUs {c}"),
            },
            if ok {
                format!("libvirt's cell {} has its CPUs", n.id)
            } else {
                format!("libvirt's cell {} does not have the CPUs asked for", n.id)
            },
        ));
        let floor = memory_floor_mib(n.memory);
        let mib = cell.map(|c| Bytes::from_kib(c.memory_kib).mib());
        let ok = mib.is_some_and(|m| m >= floor && m <= n.memory.mib());
        out.push(Check::judge(
            format!("libvirt.cell{}.memory", n.id),
            ok,
            format!(
                "{} MiB configured ({floor}..={} MiB usable)",
                n.memory.mib(),
                n.memory.mib()
            ),
            mib.map(|m| format!("{m} MiB"))
                .unwrap_or_else(|| "no memory".into()),
            if ok {
                format!("libvirt's cell {} has its memory", n.id)
            } else {
                format!("libvirt's cell {} does not have the memory asked for", n.id)
            },
        ));
    }
    let mut bad = Vec::new();
    for (i, a) in e.nodes.iter().enumerate() {
        for (j, b) in e.nodes.iter().enumerate() {
            let want = e.distances.get(i).and_then(|r| r.get(j)).copied();
            let got = caps
                .cells
                .iter()
                .find(|c| c.id == a.id.0)
                .and_then(|c| c.distance(b.id.0));
            if want != got {
                bad.push(format!(
                    "{}->{}: {}",
                    a.id,
                    b.id,
                    got.map(|g| g.to_string())
                        .unwrap_or_else(|| "missing".into())
                ));
            }
        }
    }
    out.push(Check::judge(
        "libvirt.distances",
        bad.is_empty(),
        "the profile's distance matrix",
        if bad.is_empty() {
            "the same".to_string()
        } else {
            format!("differs at {}", bad.join(", "))
        },
        if bad.is_empty() {
            "libvirt reports the distances asked for".to_string()
        } else {
            "libvirt reports other distances".to_string()
        },
    ));
}

fn devices(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    let why = not_captured(&capture::VIRSH_NODEDEV);
    let assignable = e
        .devices
        .iter()
        .filter(|d| matches!(d.kind, DeviceKind::Nic(_) | DeviceKind::Vf));
    for d in assignable {
        let short = d.bdf.short();
        let found = o
            .libvirt_nodedevs
            .as_ref()
            .map(|all| all.iter().find(|n| n.bdf == d.bdf));
        let Some(found) = found else {
            out.push(Check::skip(
                format!("libvirt.dev.{short}.numa_node"),
                "",
                why.clone(),
            ));
            continue;
        };
        let none = || format!("libvirt has no device {short}");
        // NUMA node: what Nova's PCI NUMA affinity reads.
        let want = d.node.map(|n| n.0 as i32).unwrap_or(-1);
        let got = found.map(|n| n.numa_node);
        let ok = got == Some(Some(want)) || (want == -1 && got == Some(None));
        out.push(Check::judge(
            format!("libvirt.dev.{short}.numa_node"),
            ok,
            format!("node {want}"),
            match got {
                None => none(),
                Some(None) => "no NUMA node".into(),
                Some(Some(n)) => format!("node {n}"),
            },
            if ok {
                format!("libvirt puts {} on node {want}", d.id)
            } else {
                format!("libvirt does not put {} on the node of its expander", d.id)
            },
        ));
        if e.iommu.is_some() && d.isolated {
            let group = found.and_then(|n| n.iommu_group.as_ref());
            let ok = group.is_some_and(|(_, m)| m == &vec![d.bdf]);
            out.push(Check::judge(
                format!("libvirt.dev.{short}.iommu_group"),
                ok,
                format!("an IOMMU group holding {short} alone"),
                match (found, group) {
                    (None, _) => none(),
                    (Some(_), None) => "no IOMMU group".into(),
                    (Some(_), Some((n, m))) => format!(
                        "group {n}: {}",
                        m.iter().map(|b| b.short()).collect::<Vec<_>>().join(", ")
                    ),
                },
                if ok {
                    format!("libvirt can assign {} on its own", d.id)
                } else {
                    format!("libvirt cannot assign {} on its own", d.id)
                },
            ));
        }
        if d.vfs > 0 {
            let want: Vec<String> = e
                .devices
                .iter()
                .filter(|v| {
                    v.kind == DeviceKind::Vf && v.parent == d.parent && v.bdf.bus == d.bdf.bus
                })
                .map(|v| v.bdf.short())
                .collect();
            let got: Option<Vec<String>> =
                found.map(|n| n.virt_functions.iter().map(|b| b.short()).collect());
            let ok = got.as_ref() == Some(&want);
            out.push(Check::judge(
                format!("libvirt.dev.{short}.vfs"),
                ok,
                format!("virtual functions {}", want.join(", ")),
                match &got {
                    None => none(),
                    Some(g) if g.is_empty() => "no virtual functions".into(),
                    Some(g) => format!("virtual functions {}", g.join(", ")),
                },
                if ok {
                    format!("libvirt lists {}'s VFs", d.id)
                } else {
                    format!("libvirt does not list {}'s VFs", d.id)
                },
            ));
        }
        if d.kind == DeviceKind::Vf {
            let pf = e
                .devices
                .iter()
                .find(|p| {
                    matches!(p.kind, DeviceKind::Nic(_)) && p.bdf.bus == d.bdf.bus && p.vfs > 0
                })
                .map(|p| p.bdf);
            let got = found.map(|n| n.phys_function);
            let ok = pf.is_some() && got == Some(pf);
            out.push(Check::judge(
                format!("libvirt.dev.{short}.pf"),
                ok,
                format!(
                    "physical function {}",
                    pf.map(|b| b.short()).unwrap_or_default()
                ),
                match got {
                    None => none(),
                    Some(None) => "no physical function".into(),
                    Some(Some(b)) => format!("physical function {}", b.short()),
                },
                if ok {
                    format!("libvirt knows {}'s PF", d.id)
                } else {
                    format!("libvirt does not name {}'s PF", d.id)
                },
            ));
        }
    }
}

fn kvm(o: &Observed, out: &mut Vec<Check>) {
    let want = "libvirt offers KVM domains (domcapabilities --virttype kvm)";
    match &o.libvirt_domcaps {
        None => out.push(Check::skip(
            "libvirt.kvm",
            want,
            not_captured(&capture::VIRSH_DOMCAPS),
        )),
        Some(d) => {
            let ok = d.as_ref().is_some_and(|d| d.domain == "kvm");
            out.push(Check::judge(
                "libvirt.kvm",
                ok,
                want,
                match d {
                    Some(d) => format!("domain type {}", d.domain),
                    None => "no KVM domain capabilities".into(),
                },
                if ok {
                    "libvirt in the virtual host can start KVM guests".to_string()
                } else {
                    "libvirt in the virtual host cannot start KVM guests".to_string()
                },
            ));
        }
    }
}

/// The shapes operators have, as libvirt (and so Nova's CPU pinning,
/// thread policy and hugepage placement) reads them: each cell's SMT
/// siblings and sockets, and its huge pages.
fn realism(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    let Some(caps) = &o.libvirt_caps else {
        let why = not_captured(&capture::VIRSH_CAPABILITIES);
        if e.cpu.is_some() {
            for n in e.nodes.iter().filter(|n| !n.cpus.is_empty()) {
                for what in ["siblings", "sockets"] {
                    out.push(Check::skip(
                        format!("libvirt.cell{}.{what}", n.id),
                        "",
                        why.clone(),
                    ));
                }
            }
        }
        for h in &e.hugepages {
            out.push(Check::skip(
                format!("libvirt.cell{}.hugepages.{}", h.node, h.size.sysfs_name()),
                "",
                why.clone(),
            ));
        }
        return;
    };
    if let Some(cpu) = &e.cpu {
        for n in e.nodes.iter().filter(|n| !n.cpus.is_empty()) {
            let cell = caps.cells.iter().find(|c| c.id == n.id.0);
            let cpus: Vec<_> = cell.map(|c| c.cpus.clone()).unwrap_or_default();
            // SMT siblings, CPU by CPU.
            let mut bad = Vec::new();
            for id in n.cpus.iter() {
                let want = cpu.cpu(id).map(|v| &v.siblings);
                let got = cpus
                    .iter()
                    .find(|c| c.id == id)
                    .and_then(|c| c.siblings.as_ref());
                if want != got {
                    bad.push(format!(
                        "CPU {id}: {}",
                        got.map(|g| g.to_string()).unwrap_or_else(|| "none".into())
                    ));
                }
            }
            out.push(Check::judge(
                format!("libvirt.cell{}.siblings", n.id),
                cell.is_some() && bad.is_empty(),
                format!("each CPU's siblings: {} thread(s) per core", cpu.threads),
                if cell.is_none() {
                    "no such cell".to_string()
                } else if bad.is_empty() {
                    "as asked".to_string()
                } else {
                    format!("siblings differ at {}", bad.join("; "))
                },
                if bad.is_empty() {
                    format!("libvirt's cell {} shows the SMT siblings asked for", n.id)
                } else {
                    format!("libvirt's cell {} shows other SMT siblings", n.id)
                },
            ));
            // Sockets: the CPUs sharing a socket_id are those of one socket.
            let mut bad = Vec::new();
            for c in &cpus {
                let want: Vec<u32> = cpu
                    .cpus
                    .iter()
                    .filter(|v| {
                        n.cpus.contains(v.id)
                            && cpu.cpu(c.id).is_some_and(|me| me.socket == v.socket)
                    })
                    .map(|v| v.id)
                    .collect();
                let got: Vec<u32> = cpus
                    .iter()
                    .filter(|d| d.socket.is_some() && d.socket == c.socket)
                    .map(|d| d.id)
                    .collect();
                if want != got {
                    bad.push(format!(
                        "CPU {} (socket_id {})",
                        c.id,
                        c.socket
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "none".into())
                    ));
                }
            }
            out.push(Check::judge(
                format!("libvirt.cell{}.sockets", n.id),
                cell.is_some() && bad.is_empty(),
                "CPUs grouped by socket as asked",
                if cell.is_none() {
                    "no such cell".to_string()
                } else if bad.is_empty() {
                    "as asked".to_string()
                } else {
                    format!("other sockets for {}", bad.join(", "))
                },
                if bad.is_empty() {
                    format!("libvirt's cell {} groups its CPUs by socket as asked", n.id)
                } else {
                    format!("libvirt's cell {} groups its CPUs into other sockets", n.id)
                },
            ));
        }
    }
    for h in &e.hugepages {
        let got = caps
            .cells
            .iter()
            .find(|c| c.id == h.node.0)
            .map(|c| c.pages_of(h.size.kib()).unwrap_or(0));
        let ok = got == Some(h.count);
        out.push(Check::judge(
            format!("libvirt.cell{}.hugepages.{}", h.node, h.size.sysfs_name()),
            ok,
            format!("{} pages of {}", h.count, h.size),
            match got {
                None => "no such cell".to_string(),
                Some(n) => format!("{n} pages of {}", h.size),
            },
            if ok {
                format!("libvirt counts node {}'s {} pages as asked", h.node, h.size)
            } else {
                format!("libvirt counts other {} pages on node {}", h.size, h.node)
            },
        ));
    }
}

pub(super) fn check(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    if !e.libvirt {
        return;
    }
    cells(e, o, out);
    realism(e, o, out);
    devices(e, o, out);
    kvm(o, out);
}
