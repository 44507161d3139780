//! A typed model of the part of libvirt's domain XML nestlab writes,
//! serialised and parsed with quick-xml + serde (no string templates).
//!
//! Field names follow the XML: `@name` is an attribute, `$text` element text.
//! [`Domain::to_xml`] and [`Domain::from_xml`] round-trip.
//!
//! About 800 lines: one typed struct per element nestlab writes, each with
//! its doc; split by element, one schema would be scattered over files.

use serde::{Deserialize, Serialize};

/// The XML namespace of nestlab's `<metadata>` element. A domain carrying an
/// element in this namespace is one nestlab created and may destroy.
pub const METADATA_NS: &str = "https://nestlab.dev/xmlns/domain/1";
/// The prefix used for [`METADATA_NS`].
pub const METADATA_PREFIX: &str = "nestlab";

/// Why XML could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum DomainXmlError {
    /// Serialisation failed.
    #[error("cannot write domain XML")]
    Write(#[from] quick_xml::SeError),
    /// Parsing failed.
    #[error("cannot read domain XML")]
    Read(#[from] quick_xml::DeError),
}

/// `<domain>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "domain")]
pub struct Domain {
    /// `kvm` or `qemu` (TCG).
    #[serde(rename = "@type")]
    pub kind: String,
    /// Domain name.
    pub name: String,
    /// `<metadata>` with nestlab's ownership record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Total memory.
    pub memory: Memory,
    /// `<memoryBacking>`: host huge pages behind guest cells.
    #[serde(
        rename = "memoryBacking",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_backing: Option<MemoryBacking>,
    /// vCPU count.
    pub vcpu: Vcpu,
    /// `<cputune>`: vCPU and emulator pinning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cputune: Option<Cputune>,
    /// `<numatune>`: memory policy on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numatune: Option<Numatune>,
    /// Boot.
    pub os: Os,
    /// Machine features.
    pub features: Features,
    /// CPU model and NUMA topology.
    pub cpu: Cpu,
    /// Clock.
    pub clock: Clock,
    /// Action on guest power-off.
    pub on_poweroff: String,
    /// Action on guest reboot.
    pub on_reboot: String,
    /// Action on guest crash.
    pub on_crash: String,
    /// Devices.
    pub devices: Devices,
}

/// `<metadata>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// nestlab's element.
    #[serde(rename = "nestlab:profile", alias = "profile")]
    pub nestlab: NestlabMetadata,
}

/// `<nestlab:profile xmlns:nestlab=... name hash version/>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NestlabMetadata {
    /// Always [`METADATA_NS`].
    #[serde(rename = "@xmlns:nestlab", default = "default_ns")]
    pub xmlns: String,
    /// Profile name.
    #[serde(rename = "@name")]
    pub profile: String,
    /// `sha256:...` of the profile text.
    #[serde(rename = "@hash")]
    pub hash: String,
    /// nestlab version that rendered it.
    #[serde(rename = "@version")]
    pub version: String,
    /// Run id, when started by the runner.
    #[serde(rename = "@run", default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

fn default_ns() -> String {
    METADATA_NS.to_string()
}

/// `<memory unit='KiB'>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Unit, `KiB`.
    #[serde(rename = "@unit")]
    pub unit: String,
    /// Amount.
    #[serde(rename = "$text")]
    pub value: u64,
}

/// `<vcpu placement='static'>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vcpu {
    /// `static`.
    #[serde(rename = "@placement")]
    pub placement: String,
    /// Count.
    #[serde(rename = "$text")]
    pub count: u32,
}

/// `<memoryBacking>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryBacking {
    /// `<hugepages>`.
    pub hugepages: Hugepages,
}

/// `<hugepages>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hugepages {
    /// One per page size and set of guest cells.
    #[serde(rename = "page", default)]
    pub pages: Vec<HugePage>,
}

/// `<page size unit nodeset>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HugePage {
    /// Page size.
    #[serde(rename = "@size")]
    pub size: u64,
    /// `KiB`.
    #[serde(rename = "@unit")]
    pub unit: String,
    /// Guest cells backed by pages of this size.
    #[serde(rename = "@nodeset")]
    pub nodeset: String,
}

/// `<cputune>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cputune {
    /// `<vcpupin vcpu cpuset>`, one per pinned vCPU.
    #[serde(rename = "vcpupin", default)]
    pub vcpupins: Vec<Vcpupin>,
    /// `<emulatorpin cpuset>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulatorpin: Option<Emulatorpin>,
}

/// `<vcpupin vcpu cpuset>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vcpupin {
    /// The vCPU.
    #[serde(rename = "@vcpu")]
    pub vcpu: u32,
    /// Host CPUs.
    #[serde(rename = "@cpuset")]
    pub cpuset: String,
}

/// `<emulatorpin cpuset>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Emulatorpin {
    /// Host CPUs.
    #[serde(rename = "@cpuset")]
    pub cpuset: String,
}

/// `<numatune>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Numatune {
    /// `<memory mode nodeset>`: the whole domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<NumatuneMemory>,
    /// `<memnode cellid mode nodeset>`: one guest cell.
    #[serde(rename = "memnode", default)]
    pub memnodes: Vec<Memnode>,
}

/// `<memory mode nodeset>` of `<numatune>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumatuneMemory {
    /// `strict`, `preferred`, `interleave`, `restrictive`.
    #[serde(rename = "@mode")]
    pub mode: String,
    /// Host nodes.
    #[serde(rename = "@nodeset")]
    pub nodeset: String,
}

/// `<memnode cellid mode nodeset>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memnode {
    /// Guest cell.
    #[serde(rename = "@cellid")]
    pub cellid: u32,
    /// Mode.
    #[serde(rename = "@mode")]
    pub mode: String,
    /// Host nodes.
    #[serde(rename = "@nodeset")]
    pub nodeset: String,
}

/// `<os>` with direct kernel boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Os {
    /// `<type arch machine>hvm</type>`.
    #[serde(rename = "type")]
    pub os_type: OsType,
    /// Kernel path.
    pub kernel: String,
    /// Initrd path.
    pub initrd: String,
    /// Kernel command line.
    pub cmdline: String,
}

/// `<type>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OsType {
    /// `x86_64`.
    #[serde(rename = "@arch")]
    pub arch: String,
    /// `q35`.
    #[serde(rename = "@machine")]
    pub machine: String,
    /// `hvm`.
    #[serde(rename = "$text")]
    pub value: String,
}

/// An element with no content, like `<acpi/>`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Empty {}

/// `<features>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Features {
    /// `<acpi/>` (needed for NUMA and pxb `_PXM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acpi: Option<Empty>,
    /// `<apic/>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apic: Option<Empty>,
    /// `<ioapic driver='qemu'/>`: the split I/O APIC interrupt remapping needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ioapic: Option<Ioapic>,
}

/// `<ioapic driver>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ioapic {
    /// `qemu`.
    #[serde(rename = "@driver")]
    pub driver: String,
}

/// `<cpu>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// `host-passthrough` (KVM) or `maximum` (TCG).
    #[serde(rename = "@mode")]
    pub mode: String,
    /// `none`.
    #[serde(rename = "@check")]
    pub check: String,
    /// `<topology sockets dies cores threads>`, when the profile gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<CpuTopology>,
    /// NUMA cells.
    pub numa: Numa,
}

/// `<topology sockets dies cores threads>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuTopology {
    /// Sockets.
    #[serde(rename = "@sockets")]
    pub sockets: u32,
    /// Dies per socket.
    #[serde(rename = "@dies")]
    pub dies: u32,
    /// Cores per die.
    #[serde(rename = "@cores")]
    pub cores: u32,
    /// Threads per core.
    #[serde(rename = "@threads")]
    pub threads: u32,
}

/// `<numa>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Numa {
    /// Cells.
    #[serde(rename = "cell", default)]
    pub cells: Vec<Cell>,
    /// `<interconnects>`: HMAT latencies and bandwidths (QEMU turns HMAT on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interconnects: Option<Interconnects>,
}

/// `<interconnects>`: latencies and bandwidths in the order given (libvirt
/// takes a memory-only cell's initiator from the first entry targeting it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interconnects {
    /// `<latency>` and `<bandwidth>` elements.
    #[serde(rename = "$value", default)]
    pub entries: Vec<InterconnectEntry>,
}

/// One element of `<interconnects>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InterconnectEntry {
    /// `<latency initiator target type value/>`, value in ns.
    #[serde(rename = "latency")]
    Latency(Latency),
    /// `<bandwidth initiator target type value unit/>`.
    #[serde(rename = "bandwidth")]
    Bandwidth(Bandwidth),
}

/// `<latency>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Initiator cell.
    #[serde(rename = "@initiator")]
    pub initiator: u32,
    /// Target cell.
    #[serde(rename = "@target")]
    pub target: u32,
    /// `access`.
    #[serde(rename = "@type")]
    pub kind: String,
    /// Nanoseconds.
    #[serde(rename = "@value")]
    pub value: u64,
}

/// `<bandwidth>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// Initiator cell.
    #[serde(rename = "@initiator")]
    pub initiator: u32,
    /// Target cell.
    #[serde(rename = "@target")]
    pub target: u32,
    /// `access`.
    #[serde(rename = "@type")]
    pub kind: String,
    /// Per second, in `unit`.
    #[serde(rename = "@value")]
    pub value: u64,
    /// `KiB`.
    #[serde(rename = "@unit")]
    pub unit: String,
}

/// `<cell id cpus memory unit>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Node id.
    #[serde(rename = "@id")]
    pub id: u32,
    /// cpuset; none for a memory-only cell.
    #[serde(rename = "@cpus", default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    /// Memory.
    #[serde(rename = "@memory")]
    pub memory: u64,
    /// `KiB`.
    #[serde(rename = "@unit")]
    pub unit: String,
    /// SLIT row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distances: Option<Distances>,
}

/// `<distances>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distances {
    /// One per node.
    #[serde(rename = "sibling", default)]
    pub siblings: Vec<Sibling>,
}

/// `<sibling id value>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sibling {
    /// Other node.
    #[serde(rename = "@id")]
    pub id: u32,
    /// Distance.
    #[serde(rename = "@value")]
    pub value: u32,
}

/// `<clock offset>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clock {
    /// `utc`.
    #[serde(rename = "@offset")]
    pub offset: String,
}

/// `<devices>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Devices {
    /// Disks (a disk-image guest's system disk).
    #[serde(rename = "disk", default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
    /// Controllers: usb none, pcie-root, expanders, root ports.
    #[serde(rename = "controller", default)]
    pub controllers: Vec<Controller>,
    /// Shared host folders.
    #[serde(rename = "filesystem", default, skip_serializing_if = "Vec::is_empty")]
    pub filesystems: Vec<Filesystem>,
    /// NICs.
    #[serde(rename = "interface", default)]
    pub interfaces: Vec<Interface>,
    /// Serial ports.
    #[serde(rename = "serial", default)]
    pub serials: Vec<Serial>,
    /// Consoles.
    #[serde(rename = "console", default)]
    pub consoles: Vec<Console>,
    /// `<memballoon model='none'/>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memballoon: Option<Memballoon>,
    /// The IOMMU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu: Option<Iommu>,
}

/// `<controller>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Controller {
    /// `pci` or `usb`.
    #[serde(rename = "@type")]
    pub kind: String,
    /// Controller index.
    #[serde(rename = "@index", default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// `pcie-root`, `pcie-expander-bus`, `pcie-root-port`, `none`.
    #[serde(rename = "@model")]
    pub model: String,
    /// `<model name>`: the QEMU device.
    #[serde(rename = "model", default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<ModelName>,
    /// `<target>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ControllerTarget>,
    /// Where it plugs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<PciAddress>,
}

/// `<model name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelName {
    /// QEMU device name.
    #[serde(rename = "@name")]
    pub name: String,
}

/// `<target>` of a PCI controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerTarget {
    /// Root port chassis.
    #[serde(rename = "@chassis", default, skip_serializing_if = "Option::is_none")]
    pub chassis: Option<u32>,
    /// Root port port, `0x10`.
    #[serde(rename = "@port", default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Expander bus number.
    #[serde(rename = "@busNr", default, skip_serializing_if = "Option::is_none")]
    pub bus_nr: Option<u32>,
    /// Expander NUMA node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
}

/// `<address type='pci' .../>`. `bus` is the parent controller's *index*.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PciAddress {
    /// `pci`.
    #[serde(rename = "@type")]
    pub kind: String,
    /// `0x0000`.
    #[serde(rename = "@domain")]
    pub domain: String,
    /// Parent controller index, hex.
    #[serde(rename = "@bus")]
    pub bus: String,
    /// Slot, hex.
    #[serde(rename = "@slot")]
    pub slot: String,
    /// Function, hex.
    #[serde(rename = "@function")]
    pub function: String,
}

impl PciAddress {
    /// An address on the controller with index `bus`.
    pub fn new(bus: u32, slot: u8, function: u8) -> Self {
        PciAddress {
            kind: "pci".into(),
            domain: "0x0000".into(),
            bus: format!("0x{bus:02x}"),
            slot: format!("0x{slot:02x}"),
            function: format!("0x{function:x}"),
        }
    }
}

/// `<disk type='file' device='disk'>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// `file`.
    #[serde(rename = "@type")]
    pub kind: String,
    /// `disk`.
    #[serde(rename = "@device")]
    pub device: String,
    /// `<driver name='qemu' type>`.
    pub driver: DiskDriver,
    /// `<source file>`.
    pub source: DiskSource,
    /// `<target dev bus>`.
    pub target: DiskTarget,
    /// `<readonly/>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly: Option<Empty>,
    /// `<transient shareBacking='yes'/>`: writes go to an overlay libvirt
    /// creates beside the image and deletes when the domain stops; the
    /// image is never written, and opened read-only so that several domains
    /// boot it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transient: Option<Transient>,
    /// Where it plugs in.
    pub address: PciAddress,
}

/// `<transient>` of a disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transient {
    /// `yes`: the image is shared by every domain booting it (read-only;
    /// without it QEMU takes a write lock on it and a second domain fails).
    #[serde(
        rename = "@shareBacking",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub share_backing: Option<String>,
}

/// `<driver>` of a disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskDriver {
    /// `qemu`.
    #[serde(rename = "@name")]
    pub name: String,
    /// `raw` or `qcow2`.
    #[serde(rename = "@type")]
    pub format: String,
}

/// `<source file>` of a disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSource {
    /// The image's path on the host.
    #[serde(rename = "@file")]
    pub file: String,
}

/// `<target dev bus>` of a disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskTarget {
    /// `vda`.
    #[serde(rename = "@dev")]
    pub dev: String,
    /// `virtio`.
    #[serde(rename = "@bus")]
    pub bus: String,
}

/// `<filesystem type='mount'>`: a host folder shared into the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filesystem {
    /// `mount`.
    #[serde(rename = "@type")]
    pub kind: String,
    /// 9p: `passthrough`, `mapped` or `squash`; virtiofs: `passthrough`.
    #[serde(rename = "@accessmode")]
    pub accessmode: String,
    /// `<driver type>`: `path` (9p) or `virtiofs`.
    pub driver: FsDriver,
    /// virtiofs: `<binary path>` of virtiofsd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<FsBinary>,
    /// `<source dir>`.
    pub source: FsSource,
    /// `<target dir>`: the mount tag.
    pub target: FsTarget,
    /// `<readonly/>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly: Option<Empty>,
    /// Where it plugs in.
    pub address: PciAddress,
}

/// `<driver type>` of a filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsDriver {
    /// `path` or `virtiofs`.
    #[serde(rename = "@type")]
    pub kind: String,
}

/// `<binary path>` of a virtiofs filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsBinary {
    /// virtiofsd's path.
    #[serde(rename = "@path")]
    pub path: String,
}

/// `<source dir>` of a filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsSource {
    /// The host folder.
    #[serde(rename = "@dir")]
    pub dir: String,
}

/// `<target dir>` of a filesystem: the tag the guest mounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsTarget {
    /// The tag.
    #[serde(rename = "@dir")]
    pub dir: String,
}

/// `<interface>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    /// `user`.
    #[serde(rename = "@type")]
    pub kind: String,
    /// `<mac address>`.
    pub mac: Mac,
    /// `<model type>`.
    pub model: InterfaceModel,
    /// `<rom enabled='no'/>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rom: Option<Rom>,
    /// Where it plugs in.
    pub address: PciAddress,
}

/// `<mac address>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mac {
    /// The address.
    #[serde(rename = "@address")]
    pub address: String,
}

/// `<model type>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterfaceModel {
    /// `e1000e`, `igb`, `virtio`.
    #[serde(rename = "@type")]
    pub kind: String,
}

/// `<rom enabled>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rom {
    /// `no`.
    #[serde(rename = "@enabled")]
    pub enabled: String,
}

/// `<serial>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Serial {
    /// `pty`.
    #[serde(rename = "@type")]
    pub kind: String,
    /// Target.
    pub target: SerialTarget,
}

/// `<target>` of a serial port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SerialTarget {
    /// `isa-serial`.
    #[serde(rename = "@type")]
    pub kind: String,
    /// Port number.
    #[serde(rename = "@port")]
    pub port: u32,
    /// `<model name='isa-serial'/>`.
    pub model: ModelName,
}

/// `<console>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Console {
    /// `pty`.
    #[serde(rename = "@type")]
    pub kind: String,
    /// Target.
    pub target: ConsoleTarget,
}

/// `<target>` of a console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleTarget {
    /// `serial`.
    #[serde(rename = "@type")]
    pub kind: String,
    /// Port.
    #[serde(rename = "@port")]
    pub port: u32,
}

/// `<memballoon model>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memballoon {
    /// `none`.
    #[serde(rename = "@model")]
    pub model: String,
}

/// `<iommu model>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Iommu {
    /// `intel` or `virtio`.
    #[serde(rename = "@model")]
    pub model: String,
    /// Options (Intel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<IommuDriver>,
    /// Where a virtio IOMMU plugs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<PciAddress>,
}

/// `<driver intremap caching_mode eim iotlb>`, each `on` or `off`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IommuDriver {
    /// Interrupt remapping.
    #[serde(rename = "@intremap")]
    pub intremap: String,
    /// Caching mode.
    #[serde(rename = "@caching_mode")]
    pub caching_mode: String,
    /// Extended interrupt mode.
    #[serde(rename = "@eim")]
    pub eim: String,
    /// Device IOTLB.
    #[serde(rename = "@iotlb")]
    pub iotlb: String,
}

impl Domain {
    /// Serialises to indented XML with a trailing newline.
    ///
    /// # Errors
    /// Only if serde serialisation fails, which the model's shape rules out.
    pub fn to_xml(&self) -> Result<String, DomainXmlError> {
        let mut out = String::new();
        let mut ser = quick_xml::se::Serializer::new(&mut out);
        ser.indent(' ', 2);
        self.serialize(ser)?;
        out.push('\n');
        Ok(out)
    }

    /// Parses XML written by [`Domain::to_xml`].
    ///
    /// # Errors
    /// When the XML does not have the model's shape.
    pub fn from_xml(xml: &str) -> Result<Domain, DomainXmlError> {
        Ok(quick_xml::de::from_str(xml)?)
    }
}
