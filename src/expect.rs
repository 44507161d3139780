//! Expect stage: [`Topology`] -> [`Expected`], what the guest must show.
//!
//! Derived from the same resolved topology the XML is rendered from, never
//! recomputed separately, so the XML and the checks cannot disagree.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::Topology;
use crate::model::{Bdf, BusNr, Bytes, CpuSet, NodeId, PciId};
use crate::model::{NicModel, IGB_VF_ID, VIRTIO_BLK_ID};

/// PCI id of QEMU's pxb-pcie (the expander's host bridge on bus 0).
pub const PXB_PCIE_ID: PciId = PciId::new(0x1b36, 0x000b);
/// PCI id of QEMU's pcie-root-port.
pub const ROOT_PORT_ID: PciId = PciId::new(0x1b36, 0x000c);

/// What the guest must show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expected {
    /// Profile name.
    pub profile: String,
    /// NUMA nodes.
    pub nodes: Vec<ExpectedNode>,
    /// The full distance matrix (QEMU's default 10/20 when the profile gives none).
    pub distances: Vec<Vec<u32>>,
    /// Expanders.
    pub expanders: Vec<ExpectedExpander>,
    /// Root ports, NICs and VFs, in guest address order.
    pub devices: Vec<ExpectedDevice>,
    /// Whether an IOMMU must be active.
    pub iommu: bool,
    /// Whether /dev/kvm must exist in the guest.
    pub kvm: bool,
    /// Whether libvirt runs in the guest, so that its view is checked.
    pub libvirt: bool,
    /// Devices assigned to the nested guest.
    pub nested: Vec<ExpectedAssigned>,
    /// Workloads, in the order they run.
    pub workloads: Vec<ExpectedWorkload>,
}

/// A workload that must run and exit 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedWorkload {
    /// Its name.
    pub name: String,
    /// Its command, as sh words.
    pub command: String,
    /// Its timeout.
    pub timeout_secs: u32,
}

/// A device assigned to the nested guest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedAssigned {
    /// `nic8`, `nic9.vf0`.
    pub id: String,
    /// Its address in the virtual host.
    pub bdf: Bdf,
    /// vendor:device the nested guest must see.
    pub pci_id: PciId,
    /// What OpenStack would call it: `type-PCI`, `type-PF` or `type-VF`.
    pub nova_type: &'static str,
}

/// A NUMA node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedNode {
    /// Node id.
    pub id: NodeId,
    /// CPUs.
    pub cpus: CpuSet,
    /// Configured memory (the guest shows a little less).
    pub memory: Bytes,
}

/// An expander as the guest sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedExpander {
    /// Root bus number (busNr).
    pub bus: BusNr,
    /// Last bus number of its hierarchy.
    pub last_bus: BusNr,
    /// NUMA node.
    pub node: NodeId,
    /// The pxb-pcie device on bus 0.
    pub pxb: Bdf,
    /// Its PCI id.
    pub pci_id: PciId,
}

/// What kind of device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// A pcie-root-port.
    RootPort,
    /// A NIC (physical function).
    Nic(NicModel),
    /// An igb virtual function.
    Vf,
    /// A virtio disk the guest kind adds.
    Disk,
    /// A shared host folder (virtio-9p or virtio-fs).
    Share,
}

/// A device the guest must show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedDevice {
    /// `rp:b4:00.0`-style id for root ports, `nic0`, `nic9.vf0`.
    pub id: String,
    /// Guest address.
    pub bdf: Bdf,
    /// Kind.
    pub kind: DeviceKind,
    /// vendor:device.
    pub pci_id: PciId,
    /// A word the device name contains in pci.ids (`82574L`), when known.
    pub name_hint: Option<String>,
    /// NUMA node (from its expander), if any.
    pub node: Option<NodeId>,
    /// The expander's root bus it hangs under, if any.
    pub expander: Option<BusNr>,
    /// The bridge it is behind (its root port), if any.
    pub parent: Option<Bdf>,
    /// VFs the probe creates on it.
    pub vfs: u32,
    /// Whether it must sit alone in its IOMMU group (with the IOMMU on).
    pub isolated: bool,
}

impl Expected {
    /// The expected devices on an expander's buses.
    pub fn on_expander(&self, bus: BusNr) -> impl Iterator<Item = &ExpectedDevice> + '_ {
        self.devices.iter().filter(move |d| d.expander == Some(bus))
    }
    /// The device at `bdf`.
    pub fn device(&self, bdf: Bdf) -> Option<&ExpectedDevice> {
        self.devices.iter().find(|d| d.bdf == bdf)
    }
}

/// Derives what the guest must show from the topology.
pub fn expect(t: &Topology) -> Expected {
    let p = &t.profile;
    let n = p.nodes.len();
    let distances = (0..n)
        .map(|i| match &p.nodes[i].distances {
            Some(row) => row.clone(),
            None => (0..n).map(|j| if i == j { 10 } else { 20 }).collect(),
        })
        .collect();
    let nodes = p
        .nodes
        .iter()
        .map(|n| ExpectedNode {
            id: n.id,
            cpus: n.cpus.clone(),
            memory: n.memory,
        })
        .collect();
    let expanders = t
        .expanders
        .iter()
        .map(|x| ExpectedExpander {
            bus: x.bus,
            last_bus: x.last_bus(),
            node: x.node,
            pxb: x.guest_bdf(),
            pci_id: PXB_PCIE_ID,
        })
        .collect();

    let mut devices: BTreeMap<Bdf, ExpectedDevice> = BTreeMap::new();
    for r in &t.root_ports {
        let expander = r.expander.map(|e| t.expanders[e].bus);
        devices.insert(
            r.guest_bdf,
            ExpectedDevice {
                id: format!("rp:{}", r.guest_bdf.short()),
                bdf: r.guest_bdf,
                kind: DeviceKind::RootPort,
                pci_id: ROOT_PORT_ID,
                name_hint: None,
                node: r.node,
                expander,
                parent: None,
                vfs: 0,
                isolated: true,
            },
        );
    }
    for d in &t.devices {
        let rp = &t.root_ports[d.root_port];
        let expander = rp.expander.map(|e| t.expanders[e].bus);
        devices.insert(
            d.guest_bdf,
            ExpectedDevice {
                id: d.id.clone(),
                bdf: d.guest_bdf,
                kind: DeviceKind::Nic(d.model),
                pci_id: d.model.pci_id(),
                name_hint: Some(d.model.name_hint().to_string()),
                node: d.node,
                expander,
                parent: Some(rp.guest_bdf),
                vfs: d.vfs.len() as u32,
                isolated: true,
            },
        );
        for vf in &d.vfs {
            devices.insert(
                vf.guest_bdf,
                ExpectedDevice {
                    id: vf.id.clone(),
                    bdf: vf.guest_bdf,
                    kind: DeviceKind::Vf,
                    pci_id: IGB_VF_ID,
                    name_hint: Some("82576 Virtual Function".into()),
                    node: d.node,
                    expander,
                    parent: Some(rp.guest_bdf),
                    vfs: 0,
                    isolated: true,
                },
            );
        }
    }
    for d in &t.disks {
        let rp = &t.root_ports[d.root_port];
        devices.insert(
            d.guest_bdf,
            ExpectedDevice {
                id: d.id.clone(),
                bdf: d.guest_bdf,
                kind: DeviceKind::Disk,
                pci_id: VIRTIO_BLK_ID,
                name_hint: Some("Virtio".into()),
                node: None,
                expander: None,
                parent: Some(rp.guest_bdf),
                vfs: 0,
                isolated: true,
            },
        );
    }
    for sh in &t.shares {
        let rp = &t.root_ports[sh.root_port];
        devices.insert(
            sh.guest_bdf,
            ExpectedDevice {
                id: sh.id.clone(),
                bdf: sh.guest_bdf,
                kind: DeviceKind::Share,
                pci_id: sh.driver.pci_id(),
                name_hint: Some("Virtio".into()),
                node: None,
                expander: None,
                parent: Some(rp.guest_bdf),
                vfs: 0,
                isolated: true,
            },
        );
    }
    let nested = p
        .nested
        .iter()
        .filter_map(|r| {
            let d = t.devices.get(r.nic)?;
            Some(match r.vf {
                Some(i) => ExpectedAssigned {
                    id: r.to_string(),
                    bdf: d.vfs.get(i as usize)?.guest_bdf,
                    pci_id: IGB_VF_ID,
                    nova_type: "type-VF",
                },
                None => ExpectedAssigned {
                    id: r.to_string(),
                    bdf: d.guest_bdf,
                    pci_id: d.model.pci_id(),
                    nova_type: if d.model == NicModel::Igb {
                        "type-PF"
                    } else {
                        "type-PCI"
                    },
                },
            })
        })
        .collect();
    Expected {
        nested,
        workloads: p
            .workloads
            .iter()
            .map(|w| ExpectedWorkload {
                name: w.name.clone(),
                command: w.command.to_sh(),
                timeout_secs: w.timeout_secs,
            })
            .collect(),
        profile: p.name.clone(),
        nodes,
        distances,
        expanders,
        devices: devices.into_values().collect(),
        iommu: p.iommu.is_some(),
        kvm: true,
        libvirt: p.guest.has_libvirt(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_view() {
        let p = crate::front::parse::load_profile_arg("reference").unwrap();
        let e = expect(&crate::resolve::resolve(&p).unwrap());
        assert_eq!(e.nodes.len(), 3);
        assert_eq!(e.distances[1], vec![20, 10, 20]);
        assert_eq!(
            e.expanders
                .iter()
                .map(|x| x.bus.to_string())
                .collect::<Vec<_>>(),
            ["b4", "c8", "dc"]
        );
        assert_eq!(e.devices.len(), 18);
        let nic8 = e.devices.iter().find(|d| d.id == "nic8").unwrap();
        assert_eq!(nic8.bdf.short(), "df:00.0");
        assert_eq!(nic8.parent.unwrap().short(), "dc:02.0");
        assert_eq!(nic8.node, Some(NodeId(2)));
        assert_eq!(nic8.pci_id.to_string(), "8086:10d3");
    }

    #[test]
    fn sriov_view_has_vfs() {
        let p = crate::front::parse::load_profile_arg("sriov").unwrap();
        let e = expect(&crate::resolve::resolve(&p).unwrap());
        let vfs: Vec<_> = e
            .devices
            .iter()
            .filter(|d| d.kind == DeviceKind::Vf)
            .map(|d| d.bdf.short())
            .collect();
        assert_eq!(vfs, ["c9:10.0", "c9:10.2", "c9:10.4", "c9:10.6"]);
    }
}
