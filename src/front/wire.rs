//! The profile file format (TOML), as written by users.
//!
//! These are wire structs: they mirror the file exactly, reject unknown
//! fields by name, and carry no meaning beyond their shape. The doc comment
//! on every field is the user reference (the README repeats it). Semantic
//! checks live in [`crate::front::validate`], which turns these into a
//! [`crate::model::Profile`].
//!
//! Sizes and cpusets are kept as strings here so that a malformed one is
//! reported by validation with the field's name, not as a serde type error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A whole profile file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    /// Profile name: `[a-z0-9][a-z0-9-]*`, at most 40 characters. Used in
    /// domain names (`nestlab-<name>-<id>`) and MAC derivation.
    pub name: String,
    /// Free text shown by `nestlab profiles`.
    #[serde(default)]
    pub description: Option<String>,
    /// Number of vCPUs (1..=255). Every vCPU must belong to exactly one node.
    pub vcpus: u32,
    /// CPU topology: sockets, dies, cores and threads, whose product is
    /// `vcpus`. Absent = libvirt's default, every vCPU a socket of its own.
    #[serde(default)]
    pub cpu: Option<CpuFile>,
    /// Total guest memory (`"8000 MiB"`). Optional; when given it must equal
    /// the sum of the nodes' memory.
    #[serde(default)]
    pub memory: Option<String>,
    /// NUMA cells, ids 0.. in file order. At least one is required.
    #[serde(default)]
    pub node: Vec<NodeFile>,
    /// The virtual IOMMU. Absent = no IOMMU.
    #[serde(default)]
    pub iommu: Option<IommuFile>,
    /// PCIe expander buses (QEMU pxb-pcie), each attached to a NUMA node.
    /// Optional: a NIC on a node without one gets one.
    #[serde(default)]
    pub expander: Vec<ExpanderFile>,
    /// Emulated NICs. Instances get ids nic0, nic1, ... in file order.
    #[serde(default)]
    pub nic: Vec<NicFile>,
    /// Guest (kernel) options.
    #[serde(default)]
    pub guest: Option<GuestFile>,
    /// Devices to assign to a nested guest started inside the virtual host.
    #[serde(default)]
    pub nested: Option<NestedFile>,
    /// Commands to run in the virtual host once its topology is verified,
    /// in order; each is a check `workload.<name>`.
    #[serde(default)]
    pub workload: Vec<WorkloadFile>,
    /// HMAT (ACPI Heterogeneous Memory Attribute Table) entries: latency and
    /// bandwidth from an initiator node's CPUs to a target node's memory.
    /// Any entry turns HMAT on.
    #[serde(default)]
    pub interconnect: Vec<InterconnectFile>,
    /// Where the virtual host runs on the host: vCPU and emulator pinning,
    /// memory policy, host huge pages. Checked on the host.
    #[serde(default)]
    pub tuning: Option<TuningFile>,
}

/// One `[[workload]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    /// `[a-z0-9-]`, unique among the workloads: its check is
    /// `workload.<name>`.
    pub name: String,
    /// A string run by `/bin/sh -c`, or an array of arguments run as it is.
    pub command: CommandFile,
    /// Host folders it needs, each `"HOST[:GUEST][:ro|rw]"` (GUEST defaults
    /// to HOST, the mode to ro; a relative HOST is relative to the
    /// profile's folder).
    #[serde(default)]
    pub shares: Vec<String>,
    /// Seconds it may take (default 1800); then it is killed and its check
    /// fails with the tail of its output.
    #[serde(default)]
    pub timeout: Option<u32>,
    /// Environment variables for it.
    #[serde(default)]
    pub environment: std::collections::BTreeMap<String, String>,
    /// Run it on this node's CPUs (`numactl --cpunodebind`).
    #[serde(default)]
    pub cpunodebind: Option<u32>,
    /// Allocate its memory on this node (`numactl --membind`).
    #[serde(default)]
    pub membind: Option<u32>,
    /// Where it runs (default: its first share's guest path, else `/`).
    #[serde(default)]
    pub workdir: Option<String>,
}

/// A workload's command: a shell string or an argument array.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum CommandFile {
    /// Run by `/bin/sh -c`.
    Shell(String),
    /// Run as it is.
    Argv(Vec<String>),
}

/// The `[cpu]` table: the virtual host's CPU topology.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CpuFile {
    /// Sockets (physical packages), at least 1.
    pub sockets: u32,
    /// Dies per socket. Default 1.
    #[serde(default)]
    pub dies: Option<u32>,
    /// Cores per die, at least 1.
    pub cores: u32,
    /// Threads per core (2 gives SMT siblings). Default 1. With more than
    /// one, a core's threads must all be in the same node.
    #[serde(default)]
    pub threads: Option<u32>,
}

/// One `[[interconnect]]`: an HMAT latency and/or bandwidth.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterconnectFile {
    /// The node whose CPUs access the memory (it must have CPUs).
    pub initiator: u32,
    /// The node whose memory is accessed. A memory-only node's initiator in
    /// the guest is that of the first entry targeting it.
    pub target: u32,
    /// Access latency in nanoseconds (1..=65534).
    #[serde(default)]
    pub latency_ns: Option<u32>,
    /// Access bandwidth in MiB/s (1..=65534).
    #[serde(default)]
    pub bandwidth_mib_s: Option<u32>,
}

/// The `[tuning]` table: host-side placement of the virtual host.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TuningFile {
    /// Pins vCPUs to host CPUs (`<vcpupin>`), one entry per vCPU set.
    #[serde(default)]
    pub vcpupin: Vec<VcpuPinFile>,
    /// Host CPUs of QEMU's threads other than the vCPUs (`<emulatorpin>`),
    /// in cpuset syntax.
    #[serde(default)]
    pub emulatorpin: Option<String>,
    /// Memory policy of the whole domain (`<numatune><memory>`).
    #[serde(default)]
    pub numatune: Option<NumaTuneFile>,
    /// Memory policy of one guest cell (`<numatune><memnode>`).
    #[serde(default)]
    pub memnode: Vec<MemNodeFile>,
    /// Backs a guest cell with host huge pages (`<memoryBacking>`).
    #[serde(default)]
    pub hugepages: Vec<HostHugepagesFile>,
}

/// One `[[tuning.vcpupin]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VcpuPinFile {
    /// The vCPUs pinned, in cpuset syntax (`"0-3"`): each may run on all of `cpus`.
    pub vcpus: String,
    /// Host CPUs, in cpuset syntax.
    pub cpus: String,
}

/// `[tuning.numatune]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NumaTuneFile {
    /// `"strict"`, `"preferred"` (one node), `"interleave"` or `"restrictive"`.
    pub mode: String,
    /// Host NUMA nodes, in cpuset syntax (`"0"`, `"0-1"`).
    pub nodeset: String,
}

/// One `[[tuning.memnode]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemNodeFile {
    /// The guest cell (node id).
    pub cell: u32,
    /// As in `numatune.mode`.
    pub mode: String,
    /// Host NUMA nodes its memory comes from.
    pub nodeset: String,
}

/// One `[[tuning.hugepages]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostHugepagesFile {
    /// The guest cell (node id) whose memory comes from host huge pages.
    pub cell: u32,
    /// Host page size: `"2M"` or `"1G"`.
    pub size: String,
}

/// One NUMA cell (`[[node]]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// Optional explicit id; must equal the node's position (0, 1, ...).
    #[serde(default)]
    pub id: Option<u32>,
    /// vCPUs of this node in cpuset syntax: `"0-3"`, `"0,2,4-5"`; `""` for a
    /// node with memory only (like CXL or HBM memory).
    pub cpus: String,
    /// Memory of this node: an integer and KiB, MiB or GiB (`"4096000 KiB"`).
    pub memory: String,
    /// Optional row of the SLIT distance matrix, one entry per node: 10 on
    /// the diagonal, 11..=255 elsewhere, symmetric. Given on one node means
    /// given on all. Absent everywhere = QEMU's default (10 local, 20 remote).
    #[serde(default)]
    pub distances: Option<Vec<u32>>,
    /// Huge pages the guest kernel reserves on this node at boot, by size:
    /// `{ "2M" = 64, "1G" = 1 }`.
    #[serde(default)]
    pub hugepages: Option<BTreeMap<String, u64>>,
}

/// The `[iommu]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IommuFile {
    /// IOMMU model: `"intel"` (VT-d) or `"virtio"` (virtio-iommu; the guest
    /// kernel needs CONFIG_VIRTIO_IOMMU).
    pub model: String,
    /// Interrupt remapping (needs the split I/O APIC nestlab adds). Intel
    /// only. Default true.
    #[serde(default)]
    pub intremap: Option<bool>,
    /// Caching mode, needed for VFIO inside the guest. Intel only. Default true.
    #[serde(default)]
    pub caching_mode: Option<bool>,
    /// Extended interrupt mode (x2APIC); needs intremap. Intel only. Default false.
    #[serde(default)]
    pub eim: Option<bool>,
    /// Device IOTLB. Intel only. Default false.
    #[serde(default)]
    pub iotlb: Option<bool>,
}

/// One PCIe expander bus (`[[expander]]`, libvirt `pcie-expander-bus`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpanderFile {
    /// NUMA node the bus belongs to.
    pub node: u32,
    /// Bus number (`busNr`, 1..=254) the guest sees as its root bus. Optional:
    /// auto-assigned to the lowest free range that leaves room for its root
    /// ports. An expander with busNr N and k root ports needs N..=N+k.
    #[serde(default)]
    pub bus: Option<u32>,
    /// Root ports on this expander (0..=32). Default: the number of devices
    /// placed on it.
    #[serde(default)]
    pub root_ports: Option<u32>,
}

/// One NIC entry (`[[nic]]`), possibly several instances.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NicFile {
    /// `"e1000e"` (Intel 82574L), `"igb"` (Intel 82576, SR-IOV) or `"virtio"`.
    pub model: String,
    /// NUMA node; the NIC sits behind a root port of that node's expander.
    /// Absent = behind a root port on pcie-root, no NUMA affinity.
    #[serde(default)]
    pub node: Option<u32>,
    /// Number of instances (1..=32). Default 1.
    #[serde(default)]
    pub count: Option<u32>,
    /// igb only: virtual functions to create in the guest (1..=7).
    #[serde(default)]
    pub vfs: Option<u32>,
}

/// The `[guest]` table.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuestFile {
    /// What boots in the virtual host: `"appliance"` (default: a small
    /// busybox initramfs that checks the topology) or `"debian"` (a Debian
    /// disk image with systemd, libvirt and QEMU, checked as the recipe and
    /// Nova see it). `nestlab run --guest` overrides it.
    #[serde(default)]
    pub kind: Option<String>,
    /// Appended to the guest kernel command line (printable ASCII, no
    /// quotes or backslashes, at most 1024 characters).
    #[serde(default)]
    pub cmdline_extra: Option<String>,
}

/// The `[nested]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NestedFile {
    /// Devices to assign to the nested guest: NIC ids (`"nic8"`) or VFs
    /// (`"nic9.vf0"`). Needs an `[iommu]`.
    #[serde(default)]
    pub assign: Vec<String>,
}
