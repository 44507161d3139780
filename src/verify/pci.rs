//! PCI: expanders, every expected device where the profile put it, nothing else on an expander's buses, NUMA node of each device.

use std::collections::{BTreeMap, BTreeSet};

use super::{neither, not_captured};
use crate::capture;
use crate::expect::{DeviceKind, Expected, ExpectedDevice};
use crate::model::{Bdf, BusNr};
use crate::observe::Observed;
use crate::report::Check;

/// What one source says about one address.
struct Seen {
    id: Option<crate::model::PciId>,
    name: Option<String>,
    parent: Option<Option<Bdf>>,
}

pub(super) fn check(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    let seen = seen_devices(o);
    let why = &neither(&capture::LSPCI, &capture::LSPCI_TREE);
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
            out.push(Check::skip(id, want, not_captured(&capture::PCI_NUMA)));
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
        DeviceKind::Disk => format!("{} (virtio disk) [{}] at {}", d.id, d.pci_id, d.bdf.short()),
        DeviceKind::Share => format!(
            "{} (shared folder) [{}] at {}",
            d.id,
            d.pci_id,
            d.bdf.short()
        ),
        DeviceKind::Iommu => format!("virtio-iommu [{}] at {}", d.pci_id, d.bdf.short()),
    }
}
