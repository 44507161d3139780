//! The validated profile: the semantic model every later stage reads, with
//! every default filled in. [`crate::front::validate`] makes it from the
//! wire structs; nothing else does.

use std::fmt;

use std::collections::BTreeMap;

use crate::model::types::{Bytes, CpuSet, HugePageSize, NodeId, NodeSet, PciId};

/// Most vCPUs a profile may ask for (more needs x2APIC and eim).
pub const MAX_VCPUS: u32 = 255;
/// Most NUMA nodes.
pub const MAX_NODES: usize = 64;
/// Least memory a node may have.
pub const MIN_NODE_MEMORY: Bytes = Bytes::from_mib(64);
/// Most root ports on one expander (the slots of one PCIe bus).
pub const MAX_ROOT_PORTS: u32 = 32;
/// Most instances in one `[[nic]]` entry.
pub const MAX_NIC_COUNT: u32 = 32;
/// Most VFs an igb can have in QEMU.
pub const MAX_VFS: u32 = 7;
/// pcie-root slots usable for expanders and root ports (1..=30; 0 is the
/// host bridge, 31 the ICH9 functions).
pub const PCIE_ROOT_SLOTS: u32 = 30;
/// NICs with an I/O BAR (e1000e, igb) the firmware can give I/O space to:
/// each sits behind its own root port, which needs a 4 KiB I/O window, and
/// SeaBIOS stops with "out of I/O address space" at the 15th (measured with
/// QEMU 10.0: 14 boot, 15 hang before the kernel starts).
pub const MAX_IO_BAR_NICS: usize = 14;
/// Longest accepted `guest.cmdline_extra`.
pub const MAX_CMDLINE_EXTRA: usize = 1024;
/// Longest accepted description.
pub const MAX_DESCRIPTION: usize = 4096;
/// Memory a node keeps for its kernel beside its huge pages (2M pages may
/// take the rest).
pub const HUGEPAGES_KEEP: Bytes = Bytes::from_mib(128);
/// Memory a node keeps beside its 1 GiB pages: each needs a whole free
/// aligned GiB at boot, and the kernel puts its own per-node data at the top
/// of the node, so the last GiB is never one.
pub const GIGANTIC_KEEP: Bytes = Bytes::from_mib(1024);
/// Highest HMAT latency (ns) and bandwidth (MiB/s) a profile may give: QEMU
/// writes every entry of the table as a 16-bit multiple of one base unit.
pub const MAX_HMAT_VALUE: u32 = 65534;

/// A NIC model nestlab can emulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NicModel {
    /// Intel 82574L (QEMU e1000e).
    E1000e,
    /// Intel 82576 with SR-IOV (QEMU igb, QEMU >= 8.0).
    Igb,
    /// virtio-net (modern, PCIe).
    Virtio,
}

impl NicModel {
    /// Every model, in documentation order.
    pub const ALL: [NicModel; 3] = [NicModel::E1000e, NicModel::Igb, NicModel::Virtio];

    /// The name used in profiles and in libvirt's `<model type>`.
    pub fn name(self) -> &'static str {
        match self {
            NicModel::E1000e => "e1000e",
            NicModel::Igb => "igb",
            NicModel::Virtio => "virtio",
        }
    }
    /// The PCI vendor:device id the guest sees.
    pub fn pci_id(self) -> PciId {
        match self {
            NicModel::E1000e => PciId::new(0x8086, 0x10d3),
            NicModel::Igb => PciId::new(0x8086, 0x10c9),
            NicModel::Virtio => PciId::new(0x1af4, 0x1041),
        }
    }
    /// A word of the device name that pci.ids databases print for it.
    pub fn name_hint(self) -> &'static str {
        match self {
            NicModel::E1000e => "82574L",
            NicModel::Igb => "82576",
            NicModel::Virtio => "Virtio",
        }
    }
    /// Whether the device has an I/O port BAR (so its root port needs an
    /// I/O window from the firmware).
    pub fn has_io_bar(self) -> bool {
        matches!(self, NicModel::E1000e | NicModel::Igb)
    }
    /// The QEMU device that implements it (for capability checks).
    pub fn qemu_device(self) -> &'static str {
        match self {
            NicModel::E1000e => "e1000e",
            NicModel::Igb => "igb",
            NicModel::Virtio => "virtio-net-pci",
        }
    }
}

impl fmt::Display for NicModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What boots in the virtual host (`[guest] kind`, `--guest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKindId {
    /// The busybox probe appliance (an initramfs).
    #[default]
    Appliance,
    /// A Debian disk image with systemd, libvirt and QEMU inside.
    Debian,
}

impl GuestKindId {
    /// Every kind, in documentation order.
    pub const ALL: [GuestKindId; 2] = [GuestKindId::Appliance, GuestKindId::Debian];

    /// Its name in profiles and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            GuestKindId::Appliance => "appliance",
            GuestKindId::Debian => "debian",
        }
    }

    /// Whether libvirt runs inside the virtual host (so its view is checked).
    pub fn has_libvirt(self) -> bool {
        self == GuestKindId::Debian
    }
}

impl fmt::Display for GuestKindId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for GuestKindId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        GuestKindId::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown guest kind '{s}': use appliance or debian"))
    }
}

/// The virtual IOMMU model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IommuModel {
    /// Intel VT-d (QEMU intel-iommu): the kernel says so with its DMAR line.
    Intel,
    /// virtio-iommu (QEMU virtio-iommu-pci, a PCI device on pcie-root;
    /// endpoints described by the ACPI VIOT table).
    Virtio,
}

impl IommuModel {
    /// The name in profiles and libvirt's `<iommu model>`.
    pub fn name(self) -> &'static str {
        match self {
            IommuModel::Intel => "intel",
            IommuModel::Virtio => "virtio",
        }
    }
    /// The QEMU device that implements it (for capability checks).
    pub fn qemu_device(self) -> &'static str {
        match self {
            IommuModel::Intel => "intel-iommu",
            IommuModel::Virtio => "virtio-iommu-pci",
        }
    }
}

impl fmt::Display for IommuModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The PCI id of QEMU's virtio-iommu-pci (modern virtio, device 23).
pub const VIRTIO_IOMMU_ID: PciId = PciId::new(0x1af4, 0x1057);

/// The PCI id of an igb virtual function.
pub const IGB_VF_ID: PciId = PciId::new(0x8086, 0x10ca);

/// A validated profile: the semantic model every later stage reads.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Profile {
    /// Profile name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Total memory (sum of the nodes).
    pub memory: Bytes,
    /// NUMA nodes, ids 0.. in order.
    pub nodes: Vec<Node>,
    /// The IOMMU, if any.
    pub iommu: Option<Iommu>,
    /// Expanders: those of the file in file order, then one per node that
    /// has NICs but no expander, in node order. Placement and bus numbers
    /// are decided.
    pub expanders: Vec<Expander>,
    /// NIC instances nic0, nic1, ... in file order.
    pub nics: Vec<Nic>,
    /// What boots in the virtual host.
    pub guest: GuestKindId,
    /// Extra guest kernel command line.
    pub cmdline_extra: Option<String>,
    /// Devices to assign to a nested guest.
    pub nested: Vec<DeviceRef>,
    /// Commands to run once the topology is verified, in order.
    pub workloads: Vec<crate::model::Workload>,
    /// The CPU topology (`[cpu]`); none = libvirt's default of one core
    /// per socket.
    pub cpu: Option<CpuTopology>,
    /// HMAT latencies and bandwidths between initiator and target nodes, in
    /// file order (the order decides a memory-only node's initiator).
    pub interconnects: Vec<Interconnect>,
    /// Host-side placement (`[tuning]`).
    pub tuning: Option<Tuning>,
    /// `sha256:<hex>` of the profile text.
    pub content_hash: String,
}

/// A NUMA node.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Node {
    /// Its id.
    pub id: NodeId,
    /// Its vCPUs (empty: a memory-only node, like CXL or HBM memory).
    pub cpus: CpuSet,
    /// Its memory.
    pub memory: Bytes,
    /// Its row of the distance matrix, when the profile gives one.
    pub distances: Option<Vec<u32>>,
    /// Huge pages the guest kernel reserves on it at boot, by size.
    pub hugepages: BTreeMap<HugePageSize, u64>,
}

impl Node {
    /// Whether it has memory and no CPU.
    pub fn memory_only(&self) -> bool {
        self.cpus.is_empty()
    }
}

/// `[cpu]`: sockets x dies x cores x threads = vcpus. QEMU numbers vCPUs
/// threads first: vCPU i is thread `i % threads` of core
/// `(i / threads) % cores` of die `(i / (threads * cores)) % dies` of
/// socket `i / (threads * cores * dies)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CpuTopology {
    /// Sockets (physical packages).
    pub sockets: u32,
    /// Dies per socket.
    pub dies: u32,
    /// Cores per die.
    pub cores: u32,
    /// Threads per core (2 = SMT siblings).
    pub threads: u32,
}

/// Where one vCPU sits in a [`CpuTopology`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct VcpuPlace {
    /// Socket.
    pub socket: u32,
    /// Die within the socket.
    pub die: u32,
    /// Core within the die.
    pub core: u32,
    /// Thread within the core.
    pub thread: u32,
}

impl CpuTopology {
    /// sockets x dies x cores x threads.
    pub fn product(&self) -> u64 {
        u64::from(self.sockets)
            * u64::from(self.dies)
            * u64::from(self.cores)
            * u64::from(self.threads)
    }
    /// Where vCPU `i` sits (QEMU's numbering, threads first).
    pub fn place(&self, i: u32) -> VcpuPlace {
        let t = self.threads.max(1);
        let c = self.cores.max(1);
        let d = self.dies.max(1);
        VcpuPlace {
            thread: i % t,
            core: (i / t) % c,
            die: (i / (t * c)) % d,
            socket: i / (t * c * d),
        }
    }
    /// The vCPUs of vCPU `i`'s core, itself included: its SMT siblings.
    pub fn siblings(&self, i: u32) -> CpuSet {
        let t = self.threads.max(1);
        let first = i - i % t;
        CpuSet::from_cpus(first..first + t)
    }
}

/// An HMAT entry: what memory of `target` costs CPUs of `initiator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Interconnect {
    /// The node whose CPUs access (it has CPUs).
    pub initiator: NodeId,
    /// The node whose memory is accessed.
    pub target: NodeId,
    /// Access latency in nanoseconds.
    pub latency_ns: Option<u32>,
    /// Access bandwidth in MiB/s.
    pub bandwidth_mib_s: Option<u32>,
}

/// libvirt's `<numatune>` memory modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NumaMode {
    /// Memory only from the nodeset (cgroup cpuset.mems).
    Strict,
    /// Memory from the one node first.
    Preferred,
    /// Memory spread over the nodeset.
    Interleave,
    /// Like strict, through cgroups only (no policy on the process).
    Restrictive,
}

impl NumaMode {
    /// Every mode.
    pub const ALL: [NumaMode; 4] = [
        NumaMode::Strict,
        NumaMode::Preferred,
        NumaMode::Interleave,
        NumaMode::Restrictive,
    ];
    /// The name in profiles and libvirt's XML.
    pub fn name(self) -> &'static str {
        match self {
            NumaMode::Strict => "strict",
            NumaMode::Preferred => "preferred",
            NumaMode::Interleave => "interleave",
            NumaMode::Restrictive => "restrictive",
        }
    }
    /// Whether libvirt confines QEMU's memory to the nodeset through the
    /// cpuset cgroup (so QEMU's threads show it as `Mems_allowed_list`).
    pub fn confines_threads(self) -> bool {
        matches!(self, NumaMode::Strict | NumaMode::Restrictive)
    }
}

impl fmt::Display for NumaMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[tuning]`: where the virtual host's vCPUs, QEMU's other threads and its
/// memory go on the host. Host numbers, checked on the host.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Tuning {
    /// vCPU -> the host CPUs it may run on (`<vcpupin>`), by vCPU.
    pub vcpupin: BTreeMap<u32, CpuSet>,
    /// Host CPUs of QEMU's other threads (`<emulatorpin>`).
    pub emulatorpin: Option<CpuSet>,
    /// The memory policy of the whole domain (`<numatune><memory>`).
    pub numatune: Option<NumaPolicy>,
    /// Per guest cell (`<numatune><memnode>`), by cell.
    pub memnodes: BTreeMap<NodeId, NumaPolicy>,
    /// Guest cells backed by host huge pages (`<memoryBacking>`), by cell.
    pub hugepages: BTreeMap<NodeId, HugePageSize>,
}

/// A memory mode and the host nodes it applies to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NumaPolicy {
    /// The mode.
    pub mode: NumaMode,
    /// Host NUMA nodes.
    pub nodeset: NodeSet,
}

/// The virtual IOMMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Iommu {
    /// The model.
    pub model: IommuModel,
    /// Interrupt remapping (Intel only).
    pub intremap: bool,
    /// Caching mode (Intel only).
    pub caching_mode: bool,
    /// Extended interrupt mode (Intel only).
    pub eim: bool,
    /// Device IOTLB (Intel only).
    pub iotlb: bool,
}

/// Where an expander came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// `expander[i]` of the file.
    File(usize),
    /// Added because a node had NICs and no expander.
    Implicit,
}

/// An expander with its bus number and root-port count decided.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Expander {
    /// Where it came from.
    pub origin: Origin,
    /// Its NUMA node.
    pub node: NodeId,
    /// busNr: the guest's root bus number for it.
    pub bus: u8,
    /// Number of root ports.
    pub root_ports: u32,
    /// NIC instances placed behind its root ports, in root-port order.
    pub nics: Vec<usize>,
}

/// One NIC instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Nic {
    /// `nic0`, `nic1`, ...
    pub id: String,
    /// Which `[[nic]]` entry it came from.
    pub entry: usize,
    /// Model.
    pub model: NicModel,
    /// NUMA node, or none (on pcie-root).
    pub node: Option<NodeId>,
    /// VFs to create in the guest (igb only; 0 = none).
    pub vfs: u32,
}

/// A device named in `nested.assign`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DeviceRef {
    /// NIC instance index.
    pub nic: usize,
    /// VF index, for a virtual function.
    pub vf: Option<u32>,
}

impl fmt::Display for DeviceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nic{}", self.nic)?;
        if let Some(vf) = self.vf {
            write!(f, ".vf{vf}")?;
        }
        Ok(())
    }
}
