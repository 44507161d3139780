//! Validate stage: wire structs -> [`Profile`], the semantic model of a
//! profile with every default filled in and every cross-field rule checked.
//!
//! Validation collects every problem instead of stopping at the first, and
//! each names the field it is about (`node[1].cpus`). The placement of NICs
//! on expanders and the bus numbers of expanders are decided here, because
//! whether they fit is part of whether the profile is valid.

use std::collections::BTreeSet;
use std::fmt;

mod cpu;
mod expanders;
mod guest;
mod hmat;
mod iommu;
mod nested;
mod nics;
mod nodes;
mod tuning;
mod workload;

pub use nested::parse_device_ref;
pub use workload::cli_workload;

use sha2::{Digest, Sha256};

use crate::front::wire::{ExpanderFile, NicFile, ProfileFile};
use crate::model::{
    Bytes, CpuSet, DeviceRef, Expander, GuestKindId, HugePageSize, Iommu, IommuModel, Nic,
    NicModel, Node, NodeId, Origin, Profile, GIGANTIC_KEEP, HUGEPAGES_KEEP, MAX_CMDLINE_EXTRA,
    MAX_DESCRIPTION, MAX_IO_BAR_NICS, MAX_NIC_COUNT, MAX_NODES, MAX_ROOT_PORTS, MAX_VCPUS, MAX_VFS,
    MIN_NODE_MEMORY, PCIE_ROOT_SLOTS,
};

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)]
pub enum Problem {
    #[error("must not be empty")]
    Empty,
    #[error("is {len} characters long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("'{0}' is not allowed: use lowercase letters, digits and '-', starting with a letter or digit")]
    NameChar(String),
    #[error("{value} is out of range {min}..={max}")]
    OutOfRange { value: i64, min: i64, max: i64 },
    #[error("at least one [[node]] is required")]
    NoNodes,
    #[error("{count} nodes; at most {max} are supported")]
    TooManyNodes { count: usize, max: usize },
    #[error("id {id} does not match the node's position {position} (ids must be 0, 1, ... in file order)")]
    NodeIdOrder { id: u32, position: usize },
    #[error("{0}")]
    BadCpuset(String),
    #[error("CPU {cpu} is beyond vcpus={vcpus}")]
    CpuBeyondVcpus { cpu: u32, vcpus: u32 },
    #[error("CPU {cpu} is already in node[{other}]")]
    CpuOverlap { cpu: u32, other: usize },
    #[error("vCPUs {cpus} belong to no node; every vCPU must be in exactly one")]
    CpusUnplaced { cpus: String },
    #[error("{0}")]
    BadSize(String),
    #[error("{size} is too small; a node needs at least {min}")]
    NodeMemoryTooSmall { size: Bytes, min: Bytes },
    #[error("{given} does not equal the sum of the nodes' memory ({sum})")]
    MemoryMismatch { given: Bytes, sum: Bytes },
    #[error("given on node[{given_on}] but not here: give distances on every node or on none")]
    DistancesMissing { given_on: usize },
    #[error("has {len} entries; there are {nodes} nodes")]
    DistancesLength { len: usize, nodes: usize },
    #[error("the distance of a node to itself must be 10, not {value}")]
    DistanceSelf { value: u32 },
    #[error("distance {value} to node {to} is out of range 11..=255")]
    DistanceRange { value: u32, to: usize },
    #[error(
        "distance to node {to} is {value} but node[{to}] says {back}: the matrix must be symmetric"
    )]
    DistanceAsymmetric { to: usize, value: u32, back: u32 },
    #[error("unknown IOMMU model '{0}': use 'intel' or 'virtio'")]
    IommuModel(String),
    #[error("'amd' is not supported: libvirt 11.3 (the version nestlab runs on) has no <iommu model='amd'> (QEMU 10.0's amd-iommu could only be added behind libvirt's back); use 'intel' or 'virtio'")]
    IommuAmd,
    #[error("is an Intel IOMMU option; the {model} IOMMU has no such setting")]
    IntelOnly { model: &'static str },
    #[error("no node has CPUs; at least one must (cpus = \"\" makes a memory-only node)")]
    NoCpuNode,
    #[error("sockets x dies x cores x threads = {sockets} x {dies} x {cores} x {threads} = {product}, but vcpus = {vcpus}")]
    CpuProduct {
        sockets: u32,
        dies: u32,
        cores: u32,
        threads: u32,
        product: u64,
        vcpus: u32,
    },
    #[error("CPU {cpu} and CPU {sibling} are threads of one core, but CPU {sibling} is in node[{other}]: a core's threads belong to one node")]
    CoreSplit {
        cpu: u32,
        sibling: u32,
        other: usize,
    },
    #[error("{0}")]
    BadHugepageSize(String),
    #[error("{pages} of huge pages leave {left} of the node's {memory}; keep at least {keep} for the kernel")]
    HugepagesDontFit {
        pages: Bytes,
        left: Bytes,
        memory: Bytes,
        keep: Bytes,
    },
    #[error("{count} x 1 GiB pages need a free aligned GiB each at boot, and the kernel keeps its per-node data at the top of the node: give the node at least {need} (it has {memory})")]
    GiganticDontFit {
        count: u64,
        need: Bytes,
        memory: Bytes,
    },
    #[error("node {node} has no CPUs, so it cannot be an initiator")]
    InitiatorWithoutCpus { node: u32 },
    #[error("gives neither latency_ns nor bandwidth_mib_s")]
    InterconnectEmpty,
    #[error("interconnect[{other}] already links nodes {a} and {b}: libvirt takes a link for both directions, so give each pair once")]
    InterconnectRepeated { other: usize, a: u32, b: u32 },
    #[error("node {node} has memory only and no [[interconnect]] targets it: with HMAT on, every node needs an initiator, and a memory-only node's is the initiator of the first interconnect targeting it")]
    NoInitiator { node: u32 },
    #[error("{0}")]
    BadNodeset(String),
    #[error("vCPU {vcpu} is already pinned by tuning.vcpupin[{other}]")]
    VcpuPinnedTwice { vcpu: u32, other: usize },
    #[error("unknown mode '{0}': use strict, preferred, interleave or restrictive")]
    NumaMode(String),
    #[error("mode 'preferred' takes one host node; this nodeset has {count}")]
    PreferredOneNode { count: usize },
    #[error("cell {cell} already has an entry at {other}")]
    CellTwice { cell: u32, other: String },
    #[error("the cell's memory, {memory}, is not a whole number of {size} pages")]
    MemoryNotPageMultiple { memory: Bytes, size: HugePageSize },
    #[error("eim needs intremap = true")]
    EimWithoutIntremap,
    #[error("node {node} does not exist (there are {nodes} nodes)")]
    UnknownNode { node: u32, nodes: usize },
    #[error("bus range {first}..={last} (busNr and one bus per root port) overlaps expander[{other}]'s {other_first}..={other_last}")]
    BusCollision {
        first: u32,
        last: u32,
        other: usize,
        other_first: u32,
        other_last: u32,
    },
    #[error("bus range {first}..={last} runs past bus 255")]
    BusOverflow { first: u32, last: u32 },
    #[error("busNr {bus} leaves no room for pcie-root, which needs buses 0..={needed}")]
    BusBelowRoot { bus: u32, needed: u32 },
    #[error("no free range of {buses} bus numbers is left for this expander")]
    NoBusRoom { buses: u32 },
    #[error("node {node} has {devices} devices but its expanders have {ports} root ports")]
    NodeOverfull { node: u32, devices: u32, ports: u32 },
    #[error(
        "pcie-root needs {needed} slots (expanders, root ports and a virtio IOMMU); it has {max}"
    )]
    TooManyRootSlots { needed: u32, max: u32 },
    #[error("{count} e1000e/igb NICs need {count} I/O windows behind their root ports; the firmware has room for {max}: use virtio (no I/O BAR) for the rest")]
    TooManyIoBars { count: usize, max: usize },
    #[error("unknown NIC model '{0}': use e1000e, igb or virtio")]
    NicModel(String),
    #[error("vfs is only for igb NICs (SR-IOV); this NIC is {0}")]
    VfsNotIgb(String),
    #[error("{0}")]
    BadCmdline(String),
    #[error("'{0}' is not a guest kind: use \"appliance\" or \"debian\"")]
    GuestKind(String),
    #[error("{0}")]
    Share(String),
    #[error("{0}")]
    Workload(String),
    #[error("'{0}' is not a device id: use nicN or nicN.vfK")]
    BadDeviceRef(String),
    #[error("'{id}' does not exist: the profile has nic0..nic{last}")]
    UnknownDevice { id: String, last: usize },
    #[error("'{id}' has no VF {vf}: {nic} creates {vfs} VFs")]
    UnknownVf {
        id: String,
        vf: u32,
        nic: String,
        vfs: u32,
    },
    #[error("'{0}' is listed twice")]
    DuplicateDevice(String),
    #[error("'{pf}' and its VF '{vf}' cannot both be assigned: the PF's driver must stay bound to keep its VFs")]
    PfAndVf { pf: String, vf: String },
    #[error("assigning devices to a nested guest needs an IOMMU in the virtual host: add [iommu] model = \"intel\" (or \"virtio\")")]
    NestedNoIommu,
    #[error("assigning devices to a nested guest needs iommu.caching_mode = true (VFIO inside a guest requires it)")]
    NestedNoCachingMode,
    #[error("lists no devices")]
    NestedEmpty,
}

/// A problem with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The field path, as in the file: `node[1].cpus`, `expander[2].bus`.
    pub field: String,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.field,
            printable(&self.problem.to_string())
        )
    }
}

/// Longest message a single problem prints; longer ones (a 200 KB model
/// name echoed back) are cut.
const MAX_MESSAGE: usize = 300;

/// A message safe to print on a terminal: control characters and invisible
/// or direction-changing ones (zero-width space, U+202E) shown escaped, and
/// long messages cut.
pub fn printable(msg: &str) -> String {
    let invisible = |c: char| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{00ad}')
    };
    let mut out = String::new();
    for (i, c) in msg.chars().enumerate() {
        if i >= MAX_MESSAGE {
            out.push_str("... (cut)");
            break;
        }
        if invisible(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Every problem validation found, in field order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    /// True when the field has the given problem.
    pub fn has(&self, field: &str, problem: &Problem) -> bool {
        self.0
            .iter()
            .any(|e| e.field == field && &e.problem == problem)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} problems:", many.len())?;
                for e in many {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ValidationErrors {}

struct Errors(Vec<ValidationError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, problem: Problem) {
        self.0.push(ValidationError {
            field: field.into(),
            problem,
        });
    }
}

/// Validates wire structs. `text` is the profile text, hashed into the
/// model; relative share folders are relative to the current folder.
///
/// # Errors
/// Every problem found, each naming its field.
pub fn validate(file: &ProfileFile, text: &str) -> Result<Profile, ValidationErrors> {
    validate_in(file, text, std::path::Path::new("."))
}

/// [`validate`], with relative share folders relative to `base` (the
/// profile file's folder).
///
/// # Errors
/// Every problem found, each naming its field.
pub fn validate_in(
    file: &ProfileFile,
    text: &str,
    base: &std::path::Path,
) -> Result<Profile, ValidationErrors> {
    let mut errs = Errors(Vec::new());

    check_name(&file.name, &mut errs);
    if let Some(d) = &file.description {
        if d.chars().count() > MAX_DESCRIPTION {
            errs.push(
                "description",
                Problem::TooLong {
                    len: d.chars().count(),
                    max: MAX_DESCRIPTION,
                },
            );
        }
    }
    let vcpus_ok = (1..=MAX_VCPUS).contains(&file.vcpus);
    if !vcpus_ok {
        errs.push(
            "vcpus",
            Problem::OutOfRange {
                value: file.vcpus.into(),
                min: 1,
                max: MAX_VCPUS.into(),
            },
        );
    }

    let nodes = nodes::check_nodes(file, vcpus_ok, &mut errs);
    let sum = Bytes::from_kib(nodes.iter().map(|n| n.memory.kib()).sum());
    if let Some(m) = &file.memory {
        match m.parse::<Bytes>() {
            Ok(given)
                if given != sum
                    && nodes.len() == file.node.len()
                    && !errs.0.iter().any(|e| e.field.ends_with(".memory")) =>
            {
                errs.push("memory", Problem::MemoryMismatch { given, sum })
            }
            Ok(_) => {}
            Err(e) => errs.push("memory", Problem::BadSize(e.0)),
        }
    }

    let iommu = iommu::check_iommu(file.iommu.as_ref(), &mut errs);
    let cpu = cpu::check_cpu(file, vcpus_ok, &nodes, &mut errs);
    let interconnects = hmat::check_interconnects(&file.interconnect, &nodes, &mut errs);
    let tuning = file
        .tuning
        .as_ref()
        .map(|t| tuning::check_tuning(t, file.vcpus, &nodes, &mut errs));

    let node_count = file.node.len();
    let nics = nics::check_nics(&file.nic, node_count, &mut errs);
    let io_nics = nics.iter().filter(|n| n.model.has_io_bar()).count();
    if io_nics > MAX_IO_BAR_NICS {
        errs.push(
            "nic",
            Problem::TooManyIoBars {
                count: io_nics,
                max: MAX_IO_BAR_NICS,
            },
        );
    }
    let guest = match file.guest.as_ref().and_then(|g| g.kind.as_deref()) {
        None => GuestKindId::default(),
        Some(k) => k.parse().unwrap_or_else(|_| {
            errs.push("guest.kind", Problem::GuestKind(k.to_string()));
            GuestKindId::default()
        }),
    };
    let workloads = workload::check_workloads(&file.workload, &nodes, base, &mut errs);
    // The root ports on pcie-root that are not a NIC's: the disk-image
    // guest's disk and the shares (resolve places them after the NICs').
    let extra = u32::from(guest == GuestKindId::Debian)
        + crate::model::workload::shares_of(guest, &workloads).len() as u32;
    // A virtio IOMMU is a PCI device of its own on pcie-root.
    let iommu_slots = u32::from(iommu.is_some_and(|i| i.model == IommuModel::Virtio));
    let expanders = expanders::place(
        &file.expander,
        &nics,
        node_count,
        extra,
        iommu_slots,
        &mut errs,
    );

    let cmdline_extra = file.guest.as_ref().and_then(|g| g.cmdline_extra.clone());
    if let Some(c) = &cmdline_extra {
        if let Err(msg) = guest::check_cmdline(c) {
            errs.push("guest.cmdline_extra", Problem::BadCmdline(msg));
        }
    }
    // The kernel splits its command line at whitespace: the model keeps the
    // words one space apart (leading or trailing blanks would not survive
    // the XML round trip; found by fuzzing).
    let cmdline_extra = cmdline_extra
        .map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|c| !c.is_empty());

    let mut nested = Vec::new();
    if let Some(n) = &file.nested {
        nested = nested::check_nested(&n.assign, &nics, &mut errs);
        if n.assign.is_empty() {
            errs.push("nested.assign", Problem::NestedEmpty);
        } else {
            match &iommu {
                None if file.iommu.is_none() => errs.push("nested.assign", Problem::NestedNoIommu),
                Some(i) if i.model == IommuModel::Intel && !i.caching_mode => {
                    errs.push("nested.assign", Problem::NestedNoCachingMode)
                }
                _ => {}
            }
        }
    }

    if !errs.0.is_empty() {
        return Err(ValidationErrors(errs.0));
    }
    Ok(Profile {
        name: file.name.clone(),
        description: file.description.clone(),
        vcpus: file.vcpus,
        memory: sum,
        nodes,
        iommu,
        expanders,
        nics,
        guest,
        cmdline_extra,
        nested,
        workloads,
        cpu,
        interconnects,
        tuning,
        content_hash: format!("sha256:{:x}", Sha256::digest(text.as_bytes())),
    })
}

fn check_name(name: &str, errs: &mut Errors) {
    if name.is_empty() {
        return errs.push("name", Problem::Empty);
    }
    let len = name.chars().count();
    if len > 40 {
        errs.push("name", Problem::TooLong { len, max: 40 });
    }
    if let Some(bad) = name
        .chars()
        .enumerate()
        .find(|&(i, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || (c == '-' && i > 0)))
    {
        errs.push("name", Problem::NameChar(bad.1.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::parse::parse_str;

    fn errors(toml: &str) -> ValidationErrors {
        let file = parse_str(toml, "t").unwrap();
        validate(&file, toml).unwrap_err()
    }

    const BASE: &str = "name = \"t\"\nvcpus = 4\n[[node]]\ncpus = \"0-1\"\nmemory = \"1 GiB\"\n[[node]]\ncpus = \"2-3\"\nmemory = \"1 GiB\"\n";

    #[test]
    fn cpu_beyond_vcpus() {
        let e = errors("name = \"t\"\nvcpus = 8\n[[node]]\ncpus = \"0-7\"\nmemory = \"1 GiB\"\n[[node]]\ncpus = \"9\"\nmemory = \"1 GiB\"\n");
        assert!(
            e.has(
                "node[1].cpus",
                &Problem::CpuBeyondVcpus { cpu: 9, vcpus: 8 }
            ),
            "{e}"
        );
    }

    #[test]
    fn cmdline_extra_is_kept_as_words_one_space_apart() {
        let t = format!("{BASE}[guest]\ncmdline_extra = \"  loglevel=7    foo=bar  \"\n");
        let p = crate::load_profile_str(&t, "t").unwrap();
        assert_eq!(p.cmdline_extra.as_deref(), Some("loglevel=7 foo=bar"));
        let t = format!("{BASE}[guest]\ncmdline_extra = \"   \"\n");
        assert_eq!(
            crate::load_profile_str(&t, "t").unwrap().cmdline_extra,
            None
        );
    }

    #[test]
    fn auto_bus_leaves_room() {
        let t = format!("{BASE}[[nic]]\nmodel = \"e1000e\"\nnode = 0\ncount = 3\n[[nic]]\nmodel = \"igb\"\nnode = 1\nvfs = 2\n");
        let p = crate::load_profile_str(&t, "t").unwrap();
        assert_eq!(p.expanders.len(), 2);
        assert_eq!(p.expanders[0].bus, 1);
        assert_eq!(p.expanders[0].root_ports, 3);
        assert_eq!(p.expanders[1].bus, 5);
        assert_eq!(p.nics[3].id, "nic3");
        assert_eq!(p.nics[3].vfs, 2);
    }

    #[test]
    fn collision() {
        let t = format!("{BASE}[[expander]]\nnode = 0\nbus = 100\nroot_ports = 3\n[[expander]]\nnode = 1\nbus = 103\n[[nic]]\nmodel = \"e1000e\"\nnode = 1\n");
        let e = errors(&t);
        assert!(
            e.has(
                "expander[1].bus",
                &Problem::BusCollision {
                    first: 103,
                    last: 104,
                    other: 0,
                    other_first: 100,
                    other_last: 103
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn messages_are_printable() {
        assert_eq!(printable("e1000e\u{200b}"), "e1000e\\u{200b}");
        assert!(printable(&"x".repeat(10_000)).len() < 400);
    }

    #[test]
    fn device_refs() {
        assert_eq!(
            parse_device_ref("nic8"),
            Some(DeviceRef { nic: 8, vf: None })
        );
        assert_eq!(
            parse_device_ref("nic9.vf0"),
            Some(DeviceRef {
                nic: 9,
                vf: Some(0)
            })
        );
        assert_eq!(parse_device_ref("nic"), None);
        assert_eq!(parse_device_ref("nic01"), None);
        assert_eq!(parse_device_ref("nic1.vf"), None);
        assert_eq!(parse_device_ref("eth0"), None);
    }

    #[test]
    fn cpu_topology_product_and_split_cores() {
        let t = format!("{BASE}[cpu]\nsockets = 2\ncores = 2\nthreads = 2\n");
        assert!(errors(&t).has(
            "cpu",
            &Problem::CpuProduct {
                sockets: 2,
                dies: 1,
                cores: 2,
                threads: 2,
                product: 8,
                vcpus: 4
            }
        ));
        let t = "name = \"t\"\nvcpus = 4\n[cpu]\nsockets = 1\ncores = 2\nthreads = 2\n[[node]]\ncpus = \"0,2\"\nmemory = \"1 GiB\"\n[[node]]\ncpus = \"1,3\"\nmemory = \"1 GiB\"\n";
        assert!(errors(t).has(
            "node[0].cpus",
            &Problem::CoreSplit {
                cpu: 0,
                sibling: 1,
                other: 1
            }
        ));
        let t = format!("{BASE}[cpu]\nsockets = 2\ncores = 1\nthreads = 2\n");
        let p = crate::load_profile_str(&t, "t").unwrap();
        let c = p.cpu.unwrap();
        assert_eq!(c.place(3).socket, 1);
        assert_eq!(c.siblings(3).to_string(), "2-3");
    }

    #[test]
    fn memory_only_nodes_and_hmat() {
        let three = format!("{BASE}[[node]]\ncpus = \"\"\nmemory = \"512 MiB\"\n");
        let p = crate::load_profile_str(&three, "t").unwrap();
        assert!(p.nodes[2].memory_only());
        let t = format!("{three}[[interconnect]]\ninitiator = 0\ntarget = 0\nlatency_ns = 5\n");
        assert!(errors(&t).has("node[2].cpus", &Problem::NoInitiator { node: 2 }));
        let t = format!("{three}[[interconnect]]\ninitiator = 2\ntarget = 0\nlatency_ns = 5\n");
        assert!(errors(&t).has(
            "interconnect[0].initiator",
            &Problem::InitiatorWithoutCpus { node: 2 }
        ));
        let t = format!("{three}[[interconnect]]\ninitiator = 1\ntarget = 2\nlatency_ns = 5\n[[interconnect]]\ninitiator = 0\ntarget = 2\nbandwidth_mib_s = 5\n[[interconnect]]\ninitiator = 0\ntarget = 1\nlatency_ns = 5\n[[interconnect]]\ninitiator = 1\ntarget = 0\nlatency_ns = 5\n");
        assert!(errors(&t).has(
            "interconnect[3]",
            &Problem::InterconnectRepeated {
                other: 2,
                a: 0,
                b: 1
            }
        ));
        let ok = &t[..t.rfind("[[interconnect]]").unwrap()];
        let topo = crate::resolve::resolve(&crate::load_profile_str(ok, "t").unwrap()).unwrap();
        assert_eq!(topo.initiators, [NodeId(0), NodeId(1), NodeId(1)]);
        let none = "name = \"t\"\nvcpus = 1\n[[node]]\ncpus = \"\"\nmemory = \"1 GiB\"\n";
        let e = errors(none);
        assert!(e.has("node", &Problem::NoCpuNode), "{e}");
        assert_eq!(e.0.len(), 1, "{e}");
    }

    #[test]
    fn hugepages_fit_or_are_refused() {
        let t = "name = \"t\"\nvcpus = 1\n[[node]]\ncpus = \"0\"\nmemory = \"2 GiB\"\nhugepages = { \"2M\" = 64, \"1G\" = 1 }\n";
        let p = crate::load_profile_str(t, "t").unwrap();
        assert_eq!(p.nodes[0].hugepages.get(&HugePageSize::G1), Some(&1));
        let e = errors(&t.replace("\"1G\" = 1", "\"1G\" = 2"));
        assert!(e.0.iter().any(|x| x.field == "node[0].hugepages.1G"), "{e}");
        let e = errors(&t.replace("\"2M\" = 64", "\"2M\" = 460"));
        assert!(e.0.iter().any(|x| x.field == "node[0].hugepages"), "{e}");
        let e = errors(&t.replace("\"2M\"", "\"4K\""));
        assert!(e.0.iter().any(|x| x.field == "node[0].hugepages.4K"), "{e}");
    }

    #[test]
    fn iommu_models() {
        let t = format!("{BASE}[iommu]\nmodel = \"virtio\"\ncaching_mode = true\n");
        assert!(errors(&t).has(
            "iommu.caching_mode",
            &Problem::IntelOnly { model: "virtio" }
        ));
        let t = format!("{BASE}[iommu]\nmodel = \"amd\"\n");
        assert!(errors(&t).has("iommu.model", &Problem::IommuAmd));
        let t = format!("{BASE}[iommu]\nmodel = \"virtio\"\n[[nic]]\nmodel = \"e1000e\"\nnode = 0\n[nested]\nassign = [\"nic0\"]\n");
        let p = crate::load_profile_str(&t, "t").unwrap();
        assert_eq!(p.iommu.unwrap().model, IommuModel::Virtio);
    }

    #[test]
    fn tuning_fields() {
        let t = format!("{BASE}[tuning]\nemulatorpin = \"0-1\"\n[[tuning.vcpupin]]\nvcpus = \"0-1\"\ncpus = \"0\"\n[[tuning.vcpupin]]\nvcpus = \"1-4\"\ncpus = \"1\"\n[tuning.numatune]\nmode = \"preferred\"\nnodeset = \"0-1\"\n[[tuning.memnode]]\ncell = 5\nmode = \"strict\"\nnodeset = \"0\"\n[[tuning.hugepages]]\ncell = 0\nsize = \"2M\"\n[[tuning.hugepages]]\ncell = 0\nsize = \"1G\"\n");
        let e = errors(&t);
        assert!(
            e.has(
                "tuning.vcpupin[1].vcpus",
                &Problem::VcpuPinnedTwice { vcpu: 1, other: 0 }
            ),
            "{e}"
        );
        assert!(e.has(
            "tuning.numatune.nodeset",
            &Problem::PreferredOneNode { count: 2 }
        ));
        assert!(e.has(
            "tuning.memnode[0].cell",
            &Problem::UnknownNode { node: 5, nodes: 2 }
        ));
        assert!(
            e.has(
                "tuning.hugepages[1].cell",
                &Problem::CellTwice {
                    cell: 0,
                    other: "tuning.hugepages[0]".into()
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn nested_without_iommu() {
        let t =
            format!("{BASE}[[nic]]\nmodel = \"e1000e\"\nnode = 0\n[nested]\nassign = [\"nic0\"]\n");
        assert!(errors(&t).has("nested.assign", &Problem::NestedNoIommu));
    }
}
