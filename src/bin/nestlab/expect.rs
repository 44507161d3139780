//! `nestlab expect`: what the guest of a profile must show.

use crate::common::load_topology;
use crate::exit;

pub fn main(profile: &str, json: bool) -> u8 {
    let t = match load_topology(profile) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let e = nestlab::expect::expect(&t);
    if json {
        println!("{}", serde_json::to_string_pretty(&e).unwrap_or_default());
        return exit::OK;
    }
    println!("profile {}", e.profile);
    for (n, row) in e.nodes.iter().zip(&e.distances) {
        let d = row
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "  node {}: CPUs {:<8} memory {:<12} distances {d}",
            n.id,
            n.cpus.to_string(),
            n.memory.to_string()
        );
    }
    for x in &e.expanders {
        println!(
            "  expander: root bus [0000:{}] (busNr {}) on node {}, pxb-pcie [{}] at {}",
            x.bus,
            x.bus.0,
            x.node,
            x.pci_id,
            x.pxb.short()
        );
    }
    for d in &e.devices {
        let node = d
            .node
            .map(|n| format!("node {n}"))
            .unwrap_or_else(|| "no node".into());
        let kind = match d.kind {
            nestlab::expect::DeviceKind::RootPort => "root port".to_string(),
            nestlab::expect::DeviceKind::Nic(m) => format!("{} {m}", d.id),
            nestlab::expect::DeviceKind::Vf => format!("{} VF", d.id),
            nestlab::expect::DeviceKind::Disk => format!("{} virtio disk", d.id),
            nestlab::expect::DeviceKind::Share => format!("{} shared folder", d.id),
        };
        let vfs = if d.vfs > 0 {
            format!(", {} VFs", d.vfs)
        } else {
            String::new()
        };
        println!(
            "  {}  [{}]  {:<16} {node}{vfs}",
            d.bdf.short(),
            d.pci_id,
            kind
        );
    }
    println!(
        "  iommu: {}",
        if e.iommu {
            "active; every device behind a root port alone in its IOMMU group"
        } else {
            "none"
        }
    );
    println!(
        "  /dev/kvm: {}",
        if e.kvm { "present" } else { "not required" }
    );
    exit::OK
}
