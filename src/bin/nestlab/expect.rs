//! `nestlab expect`: what the guest of a profile must show.

use crate::common::load_topology_as;
use crate::exit;

pub fn main(profile: &str, json: bool, guest: Option<nestlab::model::GuestKindId>) -> u8 {
    let t = match load_topology_as(profile, guest) {
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
        let cpus = if n.cpus.is_empty() {
            "none".to_string()
        } else {
            n.cpus.to_string()
        };
        println!(
            "  node {}: CPUs {:<8} memory {:<12} distances {d}",
            n.id,
            cpus,
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
            nestlab::expect::DeviceKind::Iommu => "virtio-iommu".to_string(),
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
    match e.iommu {
        Some(m) => println!(
            "  iommu: {m}, active; every device behind a root port alone in its IOMMU group"
        ),
        None => println!("  iommu: none"),
    }
    if let Some(c) = &e.cpu {
        println!(
            "  cpu: {} sockets x {} dies x {} cores x {} threads",
            c.sockets, c.dies, c.cores, c.threads
        );
        for v in &c.cpus {
            println!(
                "    cpu{}: socket {} die {} core {} siblings {}",
                v.id, v.socket, v.die, v.core, v.siblings
            );
        }
        if !c.whole_core_nodes.is_empty() {
            let nodes: Vec<String> = c.whole_core_nodes.iter().map(|n| n.to_string()).collect();
            println!("    whole cores in nodes {}", nodes.join(", "));
        }
    }
    for h in &e.hugepages {
        println!(
            "  hugepages: node {} {} x {}",
            h.node,
            h.count,
            h.size.sysfs_name()
        );
    }
    if let Some(h) = &e.hmat {
        for n in &h.nodes {
            let lat = n
                .latency_ns
                .map(|v| format!(", latency {v} ns"))
                .unwrap_or_default();
            let bw = n
                .bandwidth_mib_s
                .map(|v| format!(", bandwidth {v} MB/s"))
                .unwrap_or_default();
            println!(
                "  hmat: node {} reached from node {}{lat}{bw}",
                n.target, n.initiator
            );
        }
    }
    if let Some(t) = &e.tuning {
        println!("  tuning (checked on the host, not in the guest):");
        for (v, c) in &t.vcpupin {
            println!("    vCPU {v} on host CPUs {c}");
        }
        if let Some(c) = &t.emulatorpin {
            println!("    emulator threads on host CPUs {c}");
        }
        if let Some((m, n)) = &t.numatune {
            println!("    memory {m} on host nodes {n}");
        }
        for (cell, m, n) in &t.memnodes {
            println!("    cell {cell}: memory {m} on host nodes {n}");
        }
        for (cell, size) in &t.hugepages {
            println!("    cell {cell}: backed by host {size} pages");
        }
    }
    println!(
        "  /dev/kvm: {}",
        if e.kvm { "present" } else { "not required" }
    );
    exit::OK
}
