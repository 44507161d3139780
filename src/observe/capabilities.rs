//! `virsh capabilities` (virConnectGetCapabilities): the host as libvirt
//! describes it. Read for two purposes: the facts of the host nestlab runs
//! its virtual hosts on ([`crate::host::HostFacts`]), and, captured inside a
//! virtual host with libvirt, its NUMA topology as libvirt (and so OpenStack
//! Nova) sees it.
//!
//! Only the parts nestlab uses are read; everything else in the document
//! is ignored, so newer libvirt versions with more elements parse too.

use serde::{Deserialize, Serialize};

use super::xml_error;
use crate::model::CpuSet;
use crate::observe::ParseError;

/// What one capabilities document says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The host CPU model and vendor.
    pub cpu: HostCpu,
    /// NUMA cells (empty when libvirt reports no topology).
    pub cells: Vec<Cell>,
    /// Whether the host has an IOMMU libvirt can use (`<iommu support>`).
    pub iommu: Option<bool>,
    /// The guest kinds the hypervisor offers (`<guest>`).
    pub guests: Vec<GuestArch>,
}

/// `<host><cpu>`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostCpu {
    /// `x86_64`.
    pub arch: String,
    /// `Intel`, `AMD`, ... when known.
    pub vendor: Option<String>,
    /// The CPU model libvirt matched (`Skylake-Server-v1`).
    pub model: Option<String>,
    /// TSC frequency in Hz (`<counter name='tsc' frequency>`), when known.
    pub tsc_hz: Option<u64>,
    /// Features beyond the model (`vmx`, `svm`, ...).
    pub features: Vec<String>,
    /// Page sizes in KiB.
    pub page_sizes_kib: Vec<u64>,
    /// `<topology sockets dies cores threads>`.
    pub topology: Option<CpuTopology>,
}

/// `<topology sockets dies clusters cores threads>` of the host CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTopology {
    /// Sockets.
    pub sockets: u32,
    /// Dies per socket.
    pub dies: u32,
    /// Cores per die.
    pub cores: u32,
    /// Threads per core.
    pub threads: u32,
}

/// One NUMA cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Its id.
    pub id: u32,
    /// Memory in KiB.
    pub memory_kib: u64,
    /// Page size in KiB -> how many pages of it the cell has.
    pub pages: Vec<(u64, u64)>,
    /// Distances to the cells, by cell id.
    pub distances: Vec<(u32, u32)>,
    /// Its CPUs.
    pub cpus: Vec<CellCpu>,
}

impl Cell {
    /// The ids of its CPUs.
    pub fn cpu_set(&self) -> CpuSet {
        CpuSet::from_cpus(self.cpus.iter().map(|c| c.id))
    }
    /// How many pages of `size_kib` it has.
    pub fn pages_of(&self, size_kib: u64) -> Option<u64> {
        self.pages
            .iter()
            .find(|(s, _)| *s == size_kib)
            .map(|(_, n)| *n)
    }
    /// The distance to cell `to`.
    pub fn distance(&self, to: u32) -> Option<u32> {
        self.distances
            .iter()
            .find(|(id, _)| *id == to)
            .map(|(_, v)| *v)
    }
}

/// One CPU of a cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellCpu {
    /// CPU id.
    pub id: u32,
    /// Its socket (`socket_id`), when given.
    pub socket: Option<u32>,
    /// Its die (`die_id`), when given.
    pub die: Option<u32>,
    /// Its core (`core_id`), when given.
    pub core: Option<u32>,
    /// Its SMT siblings, itself included (`siblings`), when given.
    pub siblings: Option<CpuSet>,
}

/// One `<guest>`: an architecture and the domain types offered for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestArch {
    /// `hvm`.
    pub os_type: String,
    /// `x86_64`.
    pub arch: String,
    /// The emulator binary.
    pub emulator: Option<String>,
    /// `qemu`, `kvm`.
    pub domain_types: Vec<String>,
}

impl Capabilities {
    /// Whether libvirt offers `<domain type='kvm'>` for x86_64 hvm guests.
    pub fn offers_kvm(&self) -> bool {
        self.x86_64()
            .is_some_and(|g| g.domain_types.iter().any(|t| t == "kvm"))
    }
    /// The x86_64 hvm guest entry.
    pub fn x86_64(&self) -> Option<&GuestArch> {
        self.guests
            .iter()
            .find(|g| g.arch == "x86_64" && g.os_type == "hvm")
    }
    /// `vmx` or `svm` when the host CPU has it.
    pub fn virt_flag(&self) -> Option<&'static str> {
        ["vmx", "svm"]
            .into_iter()
            .find(|f| self.cpu.features.iter().any(|x| x == f))
    }
    /// Every CPU of every cell.
    pub fn cpu_count(&self) -> usize {
        self.cells.iter().map(|c| c.cpus.len()).sum()
    }
    /// The memory of every cell together, in KiB.
    pub fn memory_kib(&self) -> u64 {
        self.cells.iter().map(|c| c.memory_kib).sum()
    }
}

// Wire structs: the document as quick-xml reads it.
mod wire {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Doc {
        pub host: Host,
        #[serde(rename = "guest", default)]
        pub guests: Vec<Guest>,
    }

    #[derive(Deserialize)]
    pub struct Host {
        pub cpu: Option<Cpu>,
        pub iommu: Option<Iommu>,
        pub topology: Option<Topology>,
    }

    #[derive(Deserialize)]
    pub struct Iommu {
        #[serde(rename = "@support")]
        pub support: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct Cpu {
        pub arch: Option<String>,
        pub model: Option<String>,
        pub vendor: Option<String>,
        #[serde(rename = "counter", default)]
        pub counters: Vec<Counter>,
        pub topology: Option<CpuTopology>,
        #[serde(rename = "feature", default)]
        pub features: Vec<Named>,
        #[serde(rename = "pages", default)]
        pub pages: Vec<Pages>,
    }

    #[derive(Deserialize)]
    pub struct Counter {
        #[serde(rename = "@name")]
        pub name: String,
        #[serde(rename = "@frequency")]
        pub frequency: Option<u64>,
    }

    #[derive(Deserialize)]
    pub struct CpuTopology {
        #[serde(rename = "@sockets")]
        pub sockets: u32,
        #[serde(rename = "@dies", default = "one")]
        pub dies: u32,
        #[serde(rename = "@cores")]
        pub cores: u32,
        #[serde(rename = "@threads")]
        pub threads: u32,
    }

    fn one() -> u32 {
        1
    }

    #[derive(Deserialize)]
    pub struct Named {
        #[serde(rename = "@name")]
        pub name: String,
    }

    #[derive(Deserialize)]
    pub struct Pages {
        #[serde(rename = "@unit", default)]
        pub unit: Option<String>,
        #[serde(rename = "@size")]
        pub size: u64,
        #[serde(rename = "$text", default)]
        pub count: Option<u64>,
    }

    #[derive(Deserialize)]
    pub struct Topology {
        pub cells: Cells,
    }

    #[derive(Deserialize)]
    pub struct Cells {
        #[serde(rename = "cell", default)]
        pub cells: Vec<Cell>,
    }

    #[derive(Deserialize)]
    pub struct Cell {
        #[serde(rename = "@id")]
        pub id: u32,
        pub memory: Option<Memory>,
        #[serde(rename = "pages", default)]
        pub pages: Vec<Pages>,
        pub distances: Option<Distances>,
        pub cpus: Option<Cpus>,
    }

    #[derive(Deserialize)]
    pub struct Memory {
        #[serde(rename = "@unit", default)]
        pub unit: Option<String>,
        #[serde(rename = "$text")]
        pub value: u64,
    }

    #[derive(Deserialize)]
    pub struct Distances {
        #[serde(rename = "sibling", default)]
        pub siblings: Vec<Sibling>,
    }

    #[derive(Deserialize)]
    pub struct Sibling {
        #[serde(rename = "@id")]
        pub id: u32,
        #[serde(rename = "@value")]
        pub value: u32,
    }

    #[derive(Deserialize)]
    pub struct Cpus {
        #[serde(rename = "cpu", default)]
        pub cpus: Vec<CellCpu>,
    }

    #[derive(Deserialize)]
    pub struct CellCpu {
        #[serde(rename = "@id")]
        pub id: u32,
        #[serde(rename = "@socket_id")]
        pub socket_id: Option<u32>,
        #[serde(rename = "@die_id")]
        pub die_id: Option<u32>,
        #[serde(rename = "@core_id")]
        pub core_id: Option<u32>,
        #[serde(rename = "@siblings")]
        pub siblings: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct Guest {
        pub os_type: String,
        pub arch: Arch,
    }

    #[derive(Deserialize)]
    pub struct Arch {
        #[serde(rename = "@name")]
        pub name: String,
        pub emulator: Option<String>,
        #[serde(rename = "domain", default)]
        pub domains: Vec<Domain>,
    }

    #[derive(Deserialize)]
    pub struct Domain {
        #[serde(rename = "@type")]
        pub kind: String,
    }
}

/// A size in `unit` (libvirt's units: KiB by default) in KiB.
pub(crate) fn to_kib(value: u64, unit: Option<&str>) -> Result<u64, String> {
    let mul = match unit.unwrap_or("KiB") {
        "b" | "bytes" => return Ok(value / 1024),
        "k" | "KiB" => 1,
        "M" | "MiB" => 1024,
        "G" | "GiB" => 1024 * 1024,
        "T" | "TiB" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown memory unit '{other}'")),
    };
    value
        .checked_mul(mul)
        .ok_or_else(|| format!("{value} {} is too large", unit.unwrap_or("KiB")))
}

/// Parses a capabilities document.
///
/// # Errors
/// A [`ParseError`] (at the line the XML reader stopped at, when known)
/// for a document that is not capabilities XML.
pub fn parse(text: &str) -> Result<Capabilities, ParseError> {
    let doc: wire::Doc = quick_xml::de::from_str(text).map_err(|e| xml_error(text, e))?;
    let bad = |msg: String| ParseError::at(1, msg);
    let cpu = match doc.host.cpu {
        None => HostCpu::default(),
        Some(c) => HostCpu {
            arch: c.arch.unwrap_or_default(),
            vendor: c.vendor,
            model: c.model,
            tsc_hz: c
                .counters
                .iter()
                .find(|x| x.name == "tsc")
                .and_then(|x| x.frequency),
            features: c.features.into_iter().map(|f| f.name).collect(),
            page_sizes_kib: c
                .pages
                .iter()
                .map(|p| to_kib(p.size, p.unit.as_deref()))
                .collect::<Result<_, _>>()
                .map_err(bad)?,
            topology: c.topology.map(|t| CpuTopology {
                sockets: t.sockets,
                dies: t.dies,
                cores: t.cores,
                threads: t.threads,
            }),
        },
    };
    let mut cells = Vec::new();
    for c in doc.host.topology.map(|t| t.cells.cells).unwrap_or_default() {
        let memory_kib = match c.memory {
            Some(m) => to_kib(m.value, m.unit.as_deref()).map_err(bad)?,
            None => 0,
        };
        let mut pages = Vec::new();
        for p in c.pages {
            pages.push((
                to_kib(p.size, p.unit.as_deref()).map_err(bad)?,
                p.count.unwrap_or(0),
            ));
        }
        let mut cpus = Vec::new();
        for x in c.cpus.map(|c| c.cpus).unwrap_or_default() {
            let siblings = match x.siblings.as_deref() {
                None => None,
                Some(s) => Some(s.parse::<CpuSet>().map_err(|e| {
                    bad(format!("cell {} cpu {}: siblings '{s}': {e}", c.id, x.id))
                })?),
            };
            cpus.push(CellCpu {
                id: x.id,
                socket: x.socket_id,
                die: x.die_id,
                core: x.core_id,
                siblings,
            });
        }
        cells.push(Cell {
            id: c.id,
            memory_kib,
            pages,
            distances: c
                .distances
                .map(|d| d.siblings.iter().map(|s| (s.id, s.value)).collect())
                .unwrap_or_default(),
            cpus,
        });
    }
    Ok(Capabilities {
        cpu,
        cells,
        iommu: doc.host.iommu.and_then(|i| i.support).map(|s| s == "yes"),
        guests: doc
            .guests
            .into_iter()
            .map(|g| GuestArch {
                os_type: g.os_type,
                arch: g.arch.name,
                emulator: g.arch.emulator,
                domain_types: g.arch.domains.into_iter().map(|d| d.kind).collect(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = include_str!("../../tests/fixtures/observe/capabilities/ci-host.xml");

    #[test]
    fn ci_host() {
        let c = parse(HOST).unwrap();
        assert_eq!(c.cpu.vendor.as_deref(), Some("Intel"));
        assert_eq!(c.cpu.tsc_hz, Some(2_793_448_000));
        assert_eq!(c.virt_flag(), None, "this machine kind has no vmx/svm");
        assert!(
            c.offers_kvm(),
            "libvirt lists type='kvm' (a paravirtual /dev/kvm)"
        );
        assert_eq!(c.cells.len(), 1);
        assert_eq!(c.cpu_count(), 2);
        assert_eq!(c.memory_kib(), 9_922_772);
        assert_eq!(c.cpu.page_sizes_kib, vec![4, 2048, 1_048_576]);
        assert_eq!(c.cells[0].cpu_set().to_string(), "0-1");
        assert_eq!(c.cells[0].distance(0), Some(10));
        assert!(c.cells[0].pages_of(2048).is_some());
        assert_eq!(
            c.x86_64().and_then(|g| g.emulator.as_deref()),
            Some("/usr/bin/qemu-system-x86_64")
        );
        assert_eq!(c.iommu, Some(false));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "<capabilities>",
            "not xml",
            "<capabilities><host><cpu><pages size='x'/></cpu></host></capabilities>",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e =
            parse("<capabilities><host/>\n<guest><os_type>hvm</os_type></guest></capabilities>")
                .unwrap_err();
        assert!(e.line >= 1, "{e}");
    }

    #[test]
    fn smt_siblings_and_units() {
        let xml = r#"<capabilities><host><cpu><arch>x86_64</arch><feature name='vmx'/></cpu>
<topology><cells num='1'><cell id='0'><memory unit='MiB'>2</memory>
<pages unit='KiB' size='2048'>64</pages>
<cpus num='2'><cpu id='0' socket_id='0' die_id='0' core_id='0' siblings='0,16'/><cpu id='16' socket_id='0' core_id='0' siblings='0,16'/></cpus>
</cell></cells></topology></host></capabilities>"#;
        let c = parse(xml).unwrap();
        assert_eq!(c.virt_flag(), Some("vmx"));
        assert_eq!(c.cells[0].memory_kib, 2048);
        assert_eq!(c.cells[0].pages_of(2048), Some(64));
        assert_eq!(
            c.cells[0].cpus[1].siblings.as_ref().map(|s| s.to_string()),
            Some("0,16".into())
        );
        assert!(!c.offers_kvm());
    }
}
