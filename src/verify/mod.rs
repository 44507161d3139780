//! Verify stage: [`Expected`] + [`Observed`] -> checks.
//!
//! Every check has a stable id and ends pass, fail (expected vs observed in
//! words) or skip (its input was not captured). All checks run; one failure
//! never hides another.

use std::collections::{BTreeMap, BTreeSet};

use crate::expect::{DeviceKind, Expected, ExpectedDevice};
use crate::model::{Bdf, BusNr, Bytes};
use crate::observe::Observed;
use crate::report::Check;

/// The least a node may show of its configured memory. The kernel keeps
/// some, more on small nodes and with many CPUs (3856 MB of 4000 MiB,
/// 459 MB and, on a 16-vCPU guest, 439 MB of 512 MiB were seen), so a node
/// passes down to the larger of 10% or 96 MiB below what was configured,
/// but never at half of it or less.
pub fn memory_floor_mib(configured: Bytes) -> u64 {
    let mib = configured.mib();
    mib.saturating_sub((mib / 10).max(96)).max(mib / 2 + 1)
}

/// Runs every check.
pub fn verify(e: &Expected, o: &Observed) -> Vec<Check> {
    let mut checks = Vec::new();
    numa(e, o, &mut checks);
    pci(e, o, &mut checks);
    iommu(e, o, &mut checks);
    kvm(e, o, &mut checks);
    sriov(e, o, &mut checks);
    nested(e, o, &mut checks);
    checks
}

fn nested(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    if e.nested.is_empty() {
        return;
    }
    let why = "nested.txt was not captured";
    for a in &e.nested {
        let id = format!("nested.dev.{}.vfio", a.id);
        let want = format!(
            "{} ({}) bound to vfio-pci with /dev/vfio/<group>",
            a.id,
            a.bdf.short()
        );
        let Some(n) = &o.nested else {
            out.push(Check::skip(id, want, why));
            continue;
        };
        let (ok, observed) = match n.devices.iter().find(|d| d.id == a.id) {
            None => (false, format!("the probe did not report {}", a.id)),
            Some(d) => (
                d.driver.as_deref() == Some("vfio-pci") && d.vfio_dev,
                format!(
                    "driver {}, IOMMU group {}, /dev/vfio node {}",
                    d.driver.as_deref().unwrap_or("none"),
                    d.group
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "none".into()),
                    if d.vfio_dev { "present" } else { "missing" }
                ),
            ),
        };
        out.push(Check::judge(
            id,
            ok,
            want,
            observed,
            if ok {
                format!("{} is ready for assignment", a.id)
            } else {
                format!("{} could not be handed to vfio-pci", a.id)
            },
        ));
    }
    let booted = match &o.nested {
        None => {
            out.push(Check::skip("nested.boot", "the nested guest boots", why));
            None
        }
        Some(n) => {
            let (ok, observed) = match (&n.boot, &o.nested_lspci) {
                (Some(Ok(())), Some(_)) => (true, "booted; its lspci was captured".to_string()),
                (Some(Ok(())), None) => {
                    (false, "booted, but nested-lspci.txt is missing".to_string())
                }
                (Some(Err(why)), _) => (false, format!("did not boot: {why}")),
                (None, _) => (false, "the probe did not say whether it booted".to_string()),
            };
            out.push(Check::judge(
                "nested.boot",
                ok,
                "a nested guest with the assigned devices boots inside the virtual host",
                observed,
                if ok {
                    "the nested guest booted".to_string()
                } else {
                    "the nested guest did not boot".to_string()
                },
            ));
            Some(ok)
        }
    };
    for a in &e.nested {
        let id = format!("nested.dev.{}.visible", a.id);
        let want = format!(
            "[{}] in the nested guest ({}, {})",
            a.pci_id, a.id, a.nova_type
        );
        let Some(list) = o.nested_lspci.as_ref().filter(|_| booted == Some(true)) else {
            out.push(Check::skip(
                id,
                want,
                "the nested guest's lspci was not captured",
            ));
            continue;
        };
        // As many devices with this id as were assigned with it.
        let wanted = e.nested.iter().filter(|x| x.pci_id == a.pci_id).count();
        let seen = list.iter().filter(|d| d.id == a.pci_id).count();
        out.push(Check::judge(
            id,
            seen >= wanted,
            want,
            format!("{seen} device(s) [{}] in the nested guest", a.pci_id),
            if seen >= wanted {
                format!("the nested guest sees {}", a.id)
            } else {
                format!("the nested guest does not see {}", a.id)
            },
        ));
    }
}

fn sriov(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    for d in e.devices.iter().filter(|d| d.vfs > 0) {
        let id = format!("sriov.{}.numvfs", d.bdf.short());
        let want = format!(
            "{} VFs enabled on {} (sriov_totalvfs at least {})",
            d.vfs, d.id, d.vfs
        );
        let Some(map) = &o.sriov else {
            out.push(Check::skip(id, want, "sriov.txt was not captured"));
            continue;
        };
        let (ok, observed) = match map.get(&d.bdf) {
            None => (
                false,
                format!(
                    "{} reports no SR-IOV capability (is the igb driver loaded?)",
                    d.bdf.short()
                ),
            ),
            Some(s) => (
                s.numvfs == d.vfs && s.totalvfs >= d.vfs,
                format!("numvfs={} totalvfs={}", s.numvfs, s.totalvfs),
            ),
        };
        out.push(Check::judge(
            id,
            ok,
            want,
            observed,
            if ok {
                format!("{} has its {} VFs", d.id, d.vfs)
            } else {
                format!("{} does not have the VFs asked for", d.id)
            },
        ));
    }
}

fn numa(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    let Some(n) = &o.numactl else {
        out.push(Check::skip(
            "numa.nodes",
            format!("{} nodes", e.nodes.len()),
            "numactl.txt was not captured",
        ));
        for node in &e.nodes {
            out.push(Check::skip(
                format!("numa.node{}.cpus", node.id),
                format!("CPUs {}", node.cpus),
                "numactl.txt was not captured",
            ));
            out.push(Check::skip(
                format!("numa.node{}.memory", node.id),
                format!("{}", node.memory),
                "numactl.txt was not captured",
            ));
        }
        out.push(Check::skip(
            "numa.distances",
            "distance matrix",
            "numactl.txt was not captured",
        ));
        return;
    };
    let seen = if n.numa_available { n.nodes.len() } else { 0 };
    out.push(Check::judge(
        "numa.nodes",
        seen == e.nodes.len(),
        format!("{} nodes", e.nodes.len()),
        format!("{seen} nodes"),
        if seen == e.nodes.len() {
            "the guest has the NUMA nodes asked for".into()
        } else {
            format!(
                "the guest has {seen} NUMA nodes, the profile asks for {}",
                e.nodes.len()
            )
        },
    ));
    for node in &e.nodes {
        let got = n.node(node.id);
        let cpus_seen = got
            .map(|g| {
                if g.cpus.is_empty() {
                    "no CPUs".into()
                } else {
                    format!("CPUs {}", g.cpus)
                }
            })
            .unwrap_or_else(|| "no such node".into());
        let ok = got.is_some_and(|g| g.cpus == node.cpus);
        out.push(Check::judge(
            format!("numa.node{}.cpus", node.id),
            ok,
            format!("CPUs {}", node.cpus),
            cpus_seen,
            if ok {
                format!("node {} has its CPUs", node.id)
            } else {
                format!("node {} does not have the CPUs asked for", node.id)
            },
        ));
        let floor = memory_floor_mib(node.memory);
        let size = got.and_then(|g| g.size_mb);
        let ok = size.is_some_and(|s| s >= floor && s <= node.memory.mib());
        out.push(Check::judge(
            format!("numa.node{}.memory", node.id),
            ok,
            format!(
                "{} MB configured ({}..={} MB usable)",
                node.memory.mib(),
                floor,
                node.memory.mib()
            ),
            size.map(|s| format!("{s} MB"))
                .unwrap_or_else(|| "no size".into()),
            if ok {
                format!("node {} has its memory", node.id)
            } else {
                format!("node {} does not have the memory asked for", node.id)
            },
        ));
    }
    match &n.distances {
        Some(m) => {
            let ids: Vec<_> = e.nodes.iter().map(|x| x.id).collect();
            let mut bad = Vec::new();
            for (i, a) in ids.iter().enumerate() {
                for (j, b) in ids.iter().enumerate() {
                    let want = e.distances.get(i).and_then(|r| r.get(j)).copied();
                    let got = m.get(*a, *b);
                    if want != got {
                        bad.push(format!(
                            "{a}->{b}: {}",
                            got.map(|g| g.to_string())
                                .unwrap_or_else(|| "missing".into())
                        ));
                    }
                }
            }
            let fmt = |rows: &Vec<Vec<u32>>| {
                rows.iter()
                    .map(|r| {
                        r.iter()
                            .map(|v| v.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            out.push(Check::judge(
                "numa.distances",
                bad.is_empty(),
                fmt(&e.distances),
                if bad.is_empty() {
                    fmt(&m.rows)
                } else {
                    format!("{} (differs at {})", fmt(&m.rows), bad.join(", "))
                },
                if bad.is_empty() {
                    "the distance matrix matches".to_string()
                } else {
                    "the distance matrix differs".to_string()
                },
            ));
        }
        None => out.push(Check::skip(
            "numa.distances",
            "distance matrix",
            "numactl.txt has no distance table",
        )),
    }
}

/// What one source says about one address.
struct Seen {
    id: Option<crate::model::PciId>,
    name: Option<String>,
    parent: Option<Option<Bdf>>,
}

fn seen_devices(o: &Observed) -> Option<BTreeMap<Bdf, Seen>> {
    if o.lspci.is_none() && o.lspci_tree.is_none() {
        return None;
    }
    let mut m: BTreeMap<Bdf, Seen> = BTreeMap::new();
    if let Some(tree) = &o.lspci_tree {
        for d in tree.iter() {
            m.insert(
                d.bdf,
                Seen {
                    id: d.id,
                    name: d.name.clone(),
                    parent: Some(d.parent),
                },
            );
        }
    }
    if let Some(list) = &o.lspci {
        for d in list {
            let s = m.entry(d.bdf).or_insert(Seen {
                id: None,
                name: None,
                parent: None,
            });
            s.id = Some(d.id);
            if d.description.is_some() {
                s.name = d.description.clone();
            }
        }
    }
    Some(m)
}

fn describe(d: &ExpectedDevice) -> String {
    match d.kind {
        DeviceKind::RootPort => format!("pcie-root-port [{}] at {}", d.pci_id, d.bdf.short()),
        DeviceKind::Nic(m) => format!("{} ({m}) [{}] at {}", d.id, d.pci_id, d.bdf.short()),
        DeviceKind::Vf => format!("{} (igb VF) [{}] at {}", d.id, d.pci_id, d.bdf.short()),
    }
}

fn pci(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    let seen = seen_devices(o);
    let why = "neither lspci.txt nor lspci-tree.txt was captured";
    // Expanders: their root bus exists.
    for x in &e.expanders {
        let id = format!("pci.expander.{}", x.bus);
        let want = format!("root bus [0000:{}] on node {}", x.bus, x.node);
        match &seen {
            None => out.push(Check::skip(id, want, why)),
            Some(s) => {
                let roots: BTreeSet<BusNr> = match &o.lspci_tree {
                    Some(t) => t.root_buses().into_iter().collect(),
                    None => s.keys().map(|b| b.bus).collect(),
                };
                let ok = roots.contains(&x.bus);
                let all = roots
                    .iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                out.push(Check::judge(
                    id,
                    ok,
                    want,
                    format!("root buses {all}"),
                    if ok {
                        format!("expander bus {} is there", x.bus)
                    } else {
                        format!(
                            "the guest has no root bus {}: the expander is missing",
                            x.bus
                        )
                    },
                ));
            }
        }
    }
    // Every expected device: present, with the right identity and parent.
    for d in &e.devices {
        let id = format!("pci.dev.{}.present", d.bdf.short());
        let want = describe(d);
        let Some(s) = &seen else {
            out.push(Check::skip(id, want, why));
            continue;
        };
        let (ok, observed) = match s.get(&d.bdf) {
            None => (false, format!("nothing at {}", d.bdf.short())),
            Some(got) => {
                let mut problems = Vec::new();
                if let Some(pid) = got.id {
                    if pid != d.pci_id {
                        problems.push(format!("[{pid}] instead of [{}]", d.pci_id));
                    }
                } else if let (Some(name), Some(hint)) = (&got.name, &d.name_hint) {
                    // Tree only: names from pci.ids, or "Device 10d3" from an old one.
                    let dev_hex = format!("{:04x}", d.pci_id.device);
                    if !name.contains(hint.as_str())
                        && !name.to_ascii_lowercase().contains(&dev_hex)
                    {
                        problems.push(format!("'{name}' does not look like {hint}"));
                    }
                }
                if let (Some(parent), Some(want_parent)) = (got.parent, d.parent) {
                    if parent != Some(want_parent) {
                        problems.push(format!(
                            "behind {} instead of {}",
                            parent
                                .map(|p| p.short())
                                .unwrap_or_else(|| "no bridge".into()),
                            want_parent.short()
                        ));
                    }
                }
                let what = match (&got.id, &got.name) {
                    (Some(i), Some(n)) => format!("[{i}] {n}"),
                    (Some(i), None) => format!("[{i}]"),
                    (None, Some(n)) => n.clone(),
                    (None, None) => "a device (no name or id printed)".into(),
                };
                let ok = problems.is_empty();
                (
                    ok,
                    if ok {
                        format!("{what} at {}", d.bdf.short())
                    } else {
                        format!("{what} at {}: {}", d.bdf.short(), problems.join("; "))
                    },
                )
            }
        };
        out.push(Check::judge(
            id,
            ok,
            want.clone(),
            observed,
            if ok {
                format!("{} is where the profile put it", d.id)
            } else {
                format!("{} is missing or wrong", d.id)
            },
        ));
    }
    // Nothing else on an expander's buses.
    for x in &e.expanders {
        let id = format!("pci.expander.{}.unexpected", x.bus);
        let Some(s) = &seen else {
            out.push(Check::skip(id, "only the profile's devices", why));
            continue;
        };
        let extra: Vec<String> = s
            .iter()
            .filter(|(b, _)| b.bus >= x.bus && b.bus <= x.last_bus && e.device(**b).is_none())
            .map(|(b, got)| match got.id {
                Some(i) => format!("{} [{i}]", b.short()),
                None => b.short(),
            })
            .collect();
        out.push(Check::judge(
            id,
            extra.is_empty(),
            format!(
                "only the profile's devices on buses {}..{}",
                x.bus, x.last_bus
            ),
            if extra.is_empty() {
                "nothing else".into()
            } else {
                format!("also {}", extra.join(", "))
            },
            if extra.is_empty() {
                format!("expander {} carries only the profile's devices", x.bus)
            } else {
                format!(
                    "expander {} carries devices the profile does not have",
                    x.bus
                )
            },
        ));
    }
    // NUMA node of every device with one.
    for d in e.devices.iter().filter(|d| d.node.is_some()) {
        let id = format!("pci.dev.{}.numa_node", d.bdf.short());
        let want_node = d.node.map(|n| n.0 as i32).unwrap_or(-1);
        let want = format!("node {want_node}");
        let Some(map) = &o.pci_numa else {
            out.push(Check::skip(id, want, "pci-numa.txt was not captured"));
            continue;
        };
        let got = map.get(&d.bdf).copied();
        let ok = got == Some(want_node);
        out.push(Check::judge(
            id,
            ok,
            want,
            match got {
                Some(-1) => "no NUMA node (-1)".into(),
                Some(n) => format!("node {n}"),
                None => format!("no numa_node entry for {}", d.bdf.short()),
            },
            if ok {
                format!("{} is on node {want_node}", d.id)
            } else {
                format!("{} is not on the node of its expander", d.id)
            },
        ));
    }
}

fn iommu(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    let groups = o.iommu_groups.as_ref();
    let dmar = o.dmesg.as_ref().map(|d| d.iommu_active);
    let nonempty = groups.map(|g| !g.is_empty());
    let active = match (dmar, nonempty) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
    };
    let want = if e.iommu {
        "an active Intel IOMMU (DMAR line or IOMMU groups)"
    } else {
        "no IOMMU"
    };
    match active {
        None => out.push(Check::skip(
            "iommu.active",
            want,
            "neither dmesg.txt nor iommu-groups.txt was captured",
        )),
        Some(active) => {
            let mut seen = Vec::new();
            if let Some(d) = &o.dmesg {
                seen.push(if d.iommu_active {
                    "DMAR line present".to_string()
                } else if d.iommu_enabled {
                    "only 'DMAR: IOMMU enabled' (not active)".to_string()
                } else {
                    "no DMAR line".to_string()
                });
            }
            if let Some(g) = groups {
                seen.push(format!("{} IOMMU groups", g.len()));
            }
            out.push(Check::judge(
                "iommu.active",
                active == e.iommu,
                want,
                seen.join(", "),
                match (e.iommu, active) {
                    (true, true) => "the IOMMU is active".to_string(),
                    (true, false) => "the IOMMU is not active (check intel_iommu=on on the guest kernel command line)".to_string(),
                    (false, false) => "no IOMMU, as the profile says".to_string(),
                    (false, true) => "an IOMMU is active but the profile has none".to_string(),
                },
            ));
        }
    }
    if !e.iommu {
        return;
    }
    for d in e.devices.iter().filter(|d| d.isolated) {
        let id = format!("iommu.dev.{}.isolated", d.bdf.short());
        let want = format!("{} alone in its IOMMU group", d.bdf.short());
        let Some(g) = groups else {
            out.push(Check::skip(id, want, "iommu-groups.txt was not captured"));
            continue;
        };
        let (ok, observed) = match g.group_of(d.bdf) {
            None => (false, format!("{} is in no IOMMU group", d.bdf.short())),
            Some(n) => {
                let members = g.members(n);
                let others: Vec<String> = members
                    .iter()
                    .filter(|b| **b != d.bdf)
                    .map(|b| b.short())
                    .collect();
                if others.is_empty() {
                    (true, format!("group {n}: {} only", d.bdf.short()))
                } else {
                    (false, format!("group {n} also holds {}", others.join(", ")))
                }
            }
        };
        out.push(Check::judge(
            id,
            ok,
            want,
            observed,
            if ok {
                format!("{} can be assigned on its own", d.id)
            } else {
                format!(
                    "{} shares its IOMMU group, so it cannot be assigned alone",
                    d.id
                )
            },
        ));
    }
}

fn kvm(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    if !e.kvm {
        return;
    }
    match &o.kvm {
        None => out.push(Check::skip(
            "kvm.present",
            "/dev/kvm",
            "kvm.txt was not captured",
        )),
        Some(k) => {
            let ok = k.present && k.is_char_device;
            out.push(Check::judge(
                "kvm.present",
                ok,
                "/dev/kvm, a character device",
                if ok { format!("/dev/kvm {}", k.mode.clone().unwrap_or_default()) } else if k.present { "/dev/kvm is not a character device".into() } else { "no /dev/kvm".into() },
                if ok { "nested virtualisation is available".to_string() } else { "the guest has no /dev/kvm: nested guests cannot run (is nested virtualisation on in the host's kvm module?)".to_string() },
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_rule() {
        let ok = |configured_mib: u64, seen: u64| {
            seen >= memory_floor_mib(Bytes::from_mib(configured_mib))
        };
        assert!(ok(4000, 3856));
        assert!(ok(2000, 1969));
        assert!(ok(512, 459));
        assert!(ok(1024, 1005));
        assert!(ok(512, 439));
        assert!(!ok(64, 32));
        assert!(!ok(4000, 2000));
        assert!(!ok(512, 256));
    }
}
