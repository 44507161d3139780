//! The resolved topology: everything about the virtual host with every
//! number decided (controller indexes, bus numbers, addresses, MACs). Made
//! by [`crate::resolve`]; the XML ([`crate::xml`]) and the expected guest
//! view ([`crate::expect`]) are both derived from it, so they cannot
//! disagree.

use sha2::{Digest, Sha256};

use crate::model::profile::{NicModel, Profile};
use crate::model::types::{Bdf, BusNr, MacAddr, NodeId};

/// Everything about the virtual host, with every number decided.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Topology {
    /// The validated profile this came from.
    pub profile: Profile,
    /// Expanders, in the profile's order.
    pub expanders: Vec<ExpanderTopo>,
    /// Root ports: those of each expander in order, then those on pcie-root.
    pub root_ports: Vec<RootPort>,
    /// NIC instances, nic0.. in order.
    pub devices: Vec<Device>,
    /// Disks the guest kind adds (a disk-image guest's system disk), each
    /// behind a root port of its own on pcie-root.
    pub disks: Vec<Disk>,
    /// Host folders shared into the guest (the workloads' and the artifacts
    /// folder), each a PCI device behind a root port of its own on pcie-root.
    pub shares: Vec<ShareDevice>,
    /// The virtio IOMMU's PCI device on pcie-root, when the profile has one.
    pub iommu_device: Option<IommuDevice>,
    /// With HMAT on (the profile has interconnects): each node's initiator,
    /// by node id. A node with CPUs is its own; a memory-only node's is the
    /// initiator of the first interconnect targeting it (libvirt's rule).
    pub initiators: Vec<NodeId>,
}

/// The PCI device of a virtio IOMMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IommuDevice {
    /// Its slot on pcie-root.
    pub slot: u8,
    /// Where the guest sees it (00:slot.0).
    pub guest_bdf: Bdf,
}

/// How a folder is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareDriver {
    /// virtio-9p (QEMU's own 9p server; no daemon, no shared memory).
    #[serde(rename = "9p")]
    NineP,
    /// virtio-fs (virtiofsd; needs shared guest memory).
    Virtiofs,
}

impl ShareDriver {
    /// The PCI id the guest sees (modern virtio on PCIe).
    pub fn pci_id(self) -> crate::model::PciId {
        match self {
            ShareDriver::NineP => crate::model::PciId::new(0x1af4, 0x1049),
            ShareDriver::Virtiofs => crate::model::PciId::new(0x1af4, 0x105a),
        }
    }
}

/// What a shared folder is on the host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareSource {
    /// A folder of the user's.
    Folder(std::path::PathBuf),
    /// The run folder, made per run: nestlab's control files for the
    /// workload step and the artifacts folder (`$NESTLAB_ARTIFACTS`).
    RunFolder,
    /// The host's `/usr`, read-only at `/usr` in the appliance, mounted
    /// just before its workloads run: the user's programs, interpreters and
    /// libraries work as on the host.
    HostUsr,
}

/// A shared folder, as a device of the virtual host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShareDevice {
    /// `share0`, ...
    pub id: String,
    /// The mount tag the guest mounts it by (`nestlab0`, ...).
    pub tag: String,
    /// What it is on the host.
    pub source: ShareSource,
    /// Where the guest mounts it.
    pub guest: String,
    /// Read-only or writable.
    pub mode: crate::model::ShareMode,
    /// How it is shared.
    pub driver: ShareDriver,
    /// The root port it is behind (index into [`Topology::root_ports`]).
    pub root_port: usize,
    /// libvirt controller index of that root port.
    pub xml_bus: u32,
    /// Where the guest sees it.
    pub guest_bdf: Bdf,
}

/// A disk of the virtual host (virtio-blk).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Disk {
    /// `disk0`, ...
    pub id: String,
    /// What it holds.
    pub role: DiskRole,
    /// The root port it is behind (index into [`Topology::root_ports`]).
    pub root_port: usize,
    /// libvirt controller index of that root port (the XML address `bus`).
    pub xml_bus: u32,
    /// Where the guest sees it.
    pub guest_bdf: Bdf,
    /// The guest's device name (`vda`).
    pub target: String,
}

/// What a disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskRole {
    /// The root file system of a disk-image guest.
    System,
}

/// PCI id of a modern virtio-blk device (QEMU `virtio-blk-pci` on PCIe).
pub const VIRTIO_BLK_ID: crate::model::PciId = crate::model::PciId::new(0x1af4, 0x1042);

/// A placed expander (pxb-pcie).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExpanderTopo {
    /// libvirt controller index.
    pub index: u32,
    /// NUMA node.
    pub node: NodeId,
    /// busNr, the guest's root bus for it.
    pub bus: BusNr,
    /// Its slot on pcie-root; the guest sees the pxb device at 00:slot.0.
    pub root_slot: u8,
    /// Indices into [`Topology::root_ports`].
    pub root_ports: Vec<usize>,
}

impl ExpanderTopo {
    /// Where the guest sees the pxb-pcie device itself, on bus 0.
    pub fn guest_bdf(&self) -> Bdf {
        Bdf::new(0, self.root_slot, 0)
    }
    /// The last bus number this expander's hierarchy uses.
    pub fn last_bus(&self) -> BusNr {
        BusNr(self.bus.0.saturating_add(self.root_ports.len() as u8))
    }
}

/// A pcie-root-port controller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RootPort {
    /// libvirt controller index.
    pub index: u32,
    /// Index of the controller it plugs into (0 = pcie-root).
    pub parent_index: u32,
    /// Its slot on the parent bus.
    pub slot: u8,
    /// `<target chassis>`.
    pub chassis: u32,
    /// `<target port>`.
    pub port: u32,
    /// The expander it belongs to (index into [`Topology::expanders`]).
    pub expander: Option<usize>,
    /// NUMA node (its expander's), if any.
    pub node: Option<NodeId>,
    /// Where the guest sees the root port.
    pub guest_bdf: Bdf,
    /// The bus behind it.
    pub secondary_bus: BusNr,
    /// The NIC behind it (index into [`Topology::devices`]), if any.
    pub device: Option<usize>,
}

/// A NIC instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Device {
    /// `nic0`, ...
    pub id: String,
    /// Model.
    pub model: NicModel,
    /// NUMA node, if any.
    pub node: Option<NodeId>,
    /// MAC address (locally administered, derived from profile name and id).
    pub mac: MacAddr,
    /// The root port it is behind (index into [`Topology::root_ports`]).
    pub root_port: usize,
    /// libvirt controller index of that root port (the XML address `bus`).
    pub xml_bus: u32,
    /// Where the guest sees it.
    pub guest_bdf: Bdf,
    /// Virtual functions the guest creates on it.
    pub vfs: Vec<Vf>,
}

/// A virtual function the probe creates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Vf {
    /// `nic9.vf0`, ...
    pub id: String,
    /// Where the guest sees it.
    pub guest_bdf: Bdf,
}

/// The guest address of VF `i` of a PF at `pf` (QEMU igb: first VF offset
/// 0x80, stride 2).
pub fn igb_vf_bdf(pf: Bdf, i: u32) -> Bdf {
    let devfn = 0x80 + 2 * i;
    Bdf {
        domain: pf.domain,
        bus: pf.bus,
        slot: (devfn >> 3) as u8,
        function: (devfn & 7) as u8,
    }
}

/// The MAC of a NIC: locally administered unicast, from sha256 of the
/// profile name and the NIC id. Stable across runs and machines.
pub fn derive_mac(profile: &str, nic_id: &str, salt: u32) -> MacAddr {
    let h = Sha256::digest(format!("nestlab\0{profile}\0{nic_id}\0{salt}").as_bytes());
    MacAddr([0x02, h[0], h[1], h[2], h[3], h[4]])
}
