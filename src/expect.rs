//! Expect stage: [`Topology`] -> [`Expected`], what the guest must show.
//!
//! Derived from the same resolved topology the XML is rendered from, never
//! recomputed separately, so the XML and the checks cannot disagree.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::Topology;
use crate::model::{Bdf, BusNr, Bytes, CpuSet, HugePageSize, NodeId, NodeSet, PciId};
use crate::model::{IommuModel, NicModel, NumaMode, IGB_VF_ID, VIRTIO_BLK_ID, VIRTIO_IOMMU_ID};

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
    /// The IOMMU that must be active, if any.
    pub iommu: Option<IommuModel>,
    /// Whether /dev/kvm must exist in the guest.
    pub kvm: bool,
    /// Whether libvirt runs in the guest, so that its view is checked.
    pub libvirt: bool,
    /// Devices assigned to the nested guest.
    pub nested: Vec<ExpectedAssigned>,
    /// Workloads, in the order they run.
    pub workloads: Vec<ExpectedWorkload>,
    /// The CPU topology, when the profile gives one.
    pub cpu: Option<ExpectedCpu>,
    /// Huge pages per node: every node, for every size some node asks for.
    pub hugepages: Vec<ExpectedHugepages>,
    /// What the kernel shows of the HMAT, when the profile has interconnects.
    pub hmat: Option<ExpectedHmat>,
    /// Host-side placement, checked on the host (never in the guest).
    pub tuning: Option<ExpectedTuning>,
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

/// The CPU topology the guest must show (sysfs `topology/` of each CPU).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedCpu {
    /// Sockets.
    pub sockets: u32,
    /// Dies per socket.
    pub dies: u32,
    /// Cores per die.
    pub cores: u32,
    /// Threads per core.
    pub threads: u32,
    /// Every vCPU, by number.
    pub cpus: Vec<ExpectedVcpu>,
    /// Nodes whose CPUs must be whole cores (all when threads > 1: validation
    /// keeps a core's threads in one node).
    pub whole_core_nodes: Vec<NodeId>,
}

/// One vCPU's place.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedVcpu {
    /// CPU number.
    pub id: u32,
    /// `physical_package_id`.
    pub socket: u32,
    /// Die index within the socket. The kernel's `die_id` is not this
    /// number everywhere (Linux 6.9+ numbers dies across packages), so it is
    /// checked as a grouping: the CPUs sharing this CPU's die id.
    pub die: u32,
    /// Core index within the die; `core_id` is checked as a grouping too.
    pub core: u32,
    /// `thread_siblings_list`: the CPUs of its core.
    pub siblings: CpuSet,
    /// The CPUs of its die.
    pub die_cpus: CpuSet,
}

impl ExpectedCpu {
    /// The vCPU numbered `id`.
    pub fn cpu(&self, id: u32) -> Option<&ExpectedVcpu> {
        self.cpus.iter().find(|c| c.id == id)
    }
}

/// Huge pages of one size on one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedHugepages {
    /// The node.
    pub node: NodeId,
    /// The page size.
    pub size: HugePageSize,
    /// How many the kernel must have reserved (`nr_hugepages`).
    pub count: u64,
}

/// The HMAT as the guest kernel shows it: per node, its initiator
/// (`access0/initiators/nodeN`) and the latency and bandwidth between them
/// (`access0/initiators/{read,write}_{latency,bandwidth}`). Entries between
/// other pairs are in the ACPI table but Linux does not show them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedHmat {
    /// Every node with its initiator.
    pub nodes: Vec<ExpectedHmatNode>,
}

/// One target node of the HMAT.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedHmatNode {
    /// The node whose memory is accessed.
    pub target: NodeId,
    /// Its initiator: itself when it has CPUs.
    pub initiator: NodeId,
    /// Latency (ns) from its initiator, when the profile gives one.
    pub latency_ns: Option<u32>,
    /// Bandwidth (MiB/s, what the kernel calls MB/s) from its initiator.
    pub bandwidth_mib_s: Option<u32>,
}

/// What the host must show of the domain's placement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedTuning {
    /// Pinned vCPUs and their host CPUs.
    pub vcpupin: Vec<(u32, CpuSet)>,
    /// Host CPUs of QEMU's other threads.
    pub emulatorpin: Option<CpuSet>,
    /// The domain's memory mode and host nodes.
    pub numatune: Option<(NumaMode, NodeSet)>,
    /// Per guest cell: memory mode and host nodes.
    pub memnodes: Vec<(NodeId, NumaMode, NodeSet)>,
    /// Guest cells backed by host huge pages, and the page size.
    pub hugepages: Vec<(NodeId, HugePageSize)>,
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
    /// The virtio IOMMU's own PCI device.
    Iommu,
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
    if let Some(d) = &t.iommu_device {
        devices.insert(
            d.guest_bdf,
            ExpectedDevice {
                id: "iommu".into(),
                bdf: d.guest_bdf,
                kind: DeviceKind::Iommu,
                pci_id: VIRTIO_IOMMU_ID,
                name_hint: None,
                node: None,
                expander: None,
                parent: None,
                vfs: 0,
                // It is not behind itself: no IOMMU group.
                isolated: false,
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
        iommu: p.iommu.map(|i| i.model),
        kvm: true,
        libvirt: p.guest.has_libvirt(),
        cpu: expect_cpu(t),
        hugepages: expect_hugepages(t),
        hmat: expect_hmat(t),
        tuning: p.tuning.as_ref().map(|tu| ExpectedTuning {
            vcpupin: tu.vcpupin.iter().map(|(v, c)| (*v, c.clone())).collect(),
            emulatorpin: tu.emulatorpin.clone(),
            numatune: tu.numatune.as_ref().map(|n| (n.mode, n.nodeset.clone())),
            memnodes: tu
                .memnodes
                .iter()
                .map(|(cell, n)| (*cell, n.mode, n.nodeset.clone()))
                .collect(),
            hugepages: tu.hugepages.iter().map(|(c, s)| (*c, *s)).collect(),
        }),
    }
}

fn expect_cpu(t: &Topology) -> Option<ExpectedCpu> {
    let p = &t.profile;
    let c = p.cpu?;
    let per_die = c.cores * c.threads;
    let cpus = (0..p.vcpus)
        .map(|i| {
            let place = c.place(i);
            let die_first = i - i % per_die;
            ExpectedVcpu {
                id: i,
                socket: place.socket,
                die: place.die,
                core: place.core,
                siblings: c.siblings(i),
                die_cpus: CpuSet::from_cpus(die_first..die_first + per_die),
            }
        })
        .collect();
    let whole_core_nodes = if c.threads > 1 {
        p.nodes
            .iter()
            .filter(|n| !n.memory_only())
            .map(|n| n.id)
            .collect()
    } else {
        Vec::new()
    };
    Some(ExpectedCpu {
        sockets: c.sockets,
        dies: c.dies,
        cores: c.cores,
        threads: c.threads,
        cpus,
        whole_core_nodes,
    })
}

fn expect_hugepages(t: &Topology) -> Vec<ExpectedHugepages> {
    let nodes = &t.profile.nodes;
    let mut out = Vec::new();
    for size in HugePageSize::ALL {
        if !nodes.iter().any(|n| n.hugepages.contains_key(&size)) {
            continue;
        }
        for n in nodes {
            out.push(ExpectedHugepages {
                node: n.id,
                size,
                count: n.hugepages.get(&size).copied().unwrap_or(0),
            });
        }
    }
    out
}

fn expect_hmat(t: &Topology) -> Option<ExpectedHmat> {
    if t.initiators.is_empty() {
        return None;
    }
    let nodes = t
        .profile
        .nodes
        .iter()
        .zip(&t.initiators)
        .map(|(n, &initiator)| {
            let link = t
                .profile
                .interconnects
                .iter()
                .find(|c| c.initiator == initiator && c.target == n.id);
            ExpectedHmatNode {
                target: n.id,
                initiator,
                latency_ns: link.and_then(|c| c.latency_ns),
                bandwidth_mib_s: link.and_then(|c| c.bandwidth_mib_s),
            }
        })
        .collect();
    Some(ExpectedHmat { nodes })
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

    fn view(name: &str) -> Expected {
        let p = crate::front::parse::load_profile_arg(name).unwrap();
        expect(&crate::resolve::resolve(&p).unwrap())
    }

    #[test]
    fn cern_view_has_smt_siblings() {
        let e = view("cern");
        let c = e.cpu.as_ref().unwrap();
        assert_eq!((c.sockets, c.cores, c.threads), (2, 8, 2));
        let cpu17 = c.cpu(17).unwrap();
        assert_eq!((cpu17.socket, cpu17.core), (1, 0));
        assert_eq!(cpu17.siblings.to_string(), "16-17");
        assert_eq!(cpu17.die_cpus.to_string(), "16-31");
        assert_eq!(c.whole_core_nodes, [NodeId(0), NodeId(1)]);
        let pages: Vec<(u32, String, u64)> = e
            .hugepages
            .iter()
            .map(|h| (h.node.0, h.size.sysfs_name(), h.count))
            .collect();
        assert_eq!(
            pages,
            [
                (0, "2048kB".into(), 64),
                (1, "2048kB".into(), 64),
                (0, "1048576kB".into(), 0),
                (1, "1048576kB".into(), 1)
            ]
        );
    }

    #[test]
    fn hmat_view_has_each_nodes_initiator() {
        let e = view("hmat");
        let h = e.hmat.unwrap();
        let n2 = &h.nodes[2];
        assert_eq!(
            (n2.initiator, n2.latency_ns, n2.bandwidth_mib_s),
            (NodeId(0), Some(100), Some(4096))
        );
        assert_eq!(h.nodes[1].initiator, NodeId(1));
        assert_eq!(e.nodes[2].cpus.len(), 0);
        assert!(view("reference").hmat.is_none());
    }

    #[test]
    fn virtio_iommu_is_a_device_without_a_group() {
        let e = view("virtio-iommu");
        assert_eq!(e.iommu, Some(IommuModel::Virtio));
        let d = e
            .devices
            .iter()
            .find(|d| d.kind == DeviceKind::Iommu)
            .unwrap();
        assert_eq!((d.bdf.short(), d.isolated), ("00:03.0".to_string(), false));
        assert_eq!(d.pci_id, VIRTIO_IOMMU_ID);
    }
}
