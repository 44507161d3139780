//! Captured command output -> typed observations.
//!
//! The probe inside the guest runs one command per capture file; each
//! submodule parses one file and is pure: `&str` in, typed value or
//! [`ParseError`] (file, 1-based line, short message) out. No parser panics,
//! whatever the input. Kernel messages that a serial console mixes into the
//! output (`[   12.345678] e1000e 0000:b5:00.0: ...`) are skipped, CRLF line
//! ends are accepted.
//!
//! Which file each parser reads is said once, in [`crate::capture::CAPTURES`].
//!
//! [`Observed`] gathers whichever files were captured.
//!
//! ```
//! use nestlab::observe::Observed;
//! use nestlab::model::BusNr;
//!
//! let obs = Observed::from_files([(
//!     "lspci-tree.txt".to_string(),
//!     "-[0000:00]-+-00.0\n           \\-01.0-[01]----00.0\n".to_string(),
//! )])
//! .unwrap();
//! let tree = obs.lspci_tree.unwrap();
//! assert_eq!(tree.root_buses(), vec![BusNr(0)]);
//! assert!(obs.numactl.is_none()); // not captured: its checks are skipped
//! ```

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::Bdf;

pub mod capabilities;
pub mod cpu_topology;
pub mod dmesg;
pub mod domcaps;
pub mod hmat;
pub mod host_domain;
pub mod host_threads;
pub mod hugepages;
pub mod iommu;
pub mod kvm;
pub mod lspci;
pub mod lspci_tree;
pub mod nested;
pub mod nodedev;
pub mod numactl;
pub mod pci_numa;
pub mod sriov;
mod text;
pub mod workloads;

/// A capture file that could not be parsed: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}line {line}: {message}", if file.is_empty() { String::new() } else { format!("{file} ") })]
pub struct ParseError {
    /// The capture file (its name, or its path when read from a directory).
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, e.g. `cannot read '...'`.
    pub message: String,
}

impl ParseError {
    /// An error in `file` at 1-based `line`.
    pub fn new(file: impl Into<String>, line: usize, message: impl Into<String>) -> Self {
        ParseError {
            file: file.into(),
            line,
            message: message.into(),
        }
    }
    /// An error at 1-based `line` of a file not named yet (the capture
    /// table's glue names it, see [`ParseError::in_file`]).
    pub fn at(line: usize, message: impl Into<String>) -> Self {
        ParseError::new("", line, message)
    }
    /// The same error reported against another file name (e.g. a full path).
    pub fn in_file(self, file: impl Into<String>) -> Self {
        ParseError {
            file: file.into(),
            ..self
        }
    }
}

/// A [`ParseError`] for XML quick-xml could not read into the wanted
/// shape: at the line of the first syntax error when there is one (quick-xml's
/// serde errors carry no position), else at line 1 with serde's message.
pub(crate) fn xml_error(text: &str, e: quick_xml::DeError) -> ParseError {
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(syntax) => {
                let at = (reader.buffer_position() as usize).min(text.len());
                let line = text.as_bytes()[..at]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1;
                return ParseError::at(line, format!("not well-formed XML: {syntax}"));
            }
        }
    }
    ParseError::at(1, format!("unexpected XML: {e}"))
}

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The capture directory is missing or not a directory.
    #[error("cannot open capture directory {}", .path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// A capture file exists but cannot be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// A capture file could not be parsed.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// Everything parsed from one capture. `None` = the file was not captured,
/// so the checks that need it are skipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// `lspci-tree.txt`.
    pub lspci_tree: Option<lspci_tree::PciTree>,
    /// `lspci.txt`.
    pub lspci: Option<Vec<lspci::PciDevice>>,
    /// `numactl.txt`.
    pub numactl: Option<numactl::NumaHardware>,
    /// `iommu-groups.txt`.
    pub iommu_groups: Option<iommu::IommuGroups>,
    /// `pci-numa.txt`: device -> NUMA node (-1 = none).
    pub pci_numa: Option<BTreeMap<Bdf, i32>>,
    /// `dmesg.txt`.
    pub dmesg: Option<dmesg::DmesgFacts>,
    /// `kvm.txt`.
    pub kvm: Option<kvm::KvmFacts>,
    /// `sriov.txt`: SR-IOV physical function -> its VF counts.
    pub sriov: Option<BTreeMap<Bdf, sriov::SriovState>>,
    /// `nested.txt`: the assigned devices and the nested boot.
    pub nested: Option<nested::NestedFacts>,
    /// `nested-lspci.txt`: the nested guest's `lspci -nn`.
    pub nested_lspci: Option<Vec<lspci::PciDevice>>,
    /// `virsh-capabilities.xml`: libvirt's view of the virtual host.
    pub libvirt_caps: Option<capabilities::Capabilities>,
    /// `virsh-domcapabilities.xml` (KVM): `Some(None)` when virsh printed
    /// no domain capabilities (no KVM there: an error message).
    pub libvirt_domcaps: Option<Option<domcaps::DomainCaps>>,
    /// `virsh-nodedev.xml`: libvirt's PCI devices.
    pub libvirt_nodedevs: Option<Vec<nodedev::NodeDev>>,
    /// `workloads.txt`: what the workload step did.
    pub workloads: Option<Vec<workloads::WorkloadRun>>,
    /// The last lines of each workload's output (`workload-<name>.log`).
    #[serde(default)]
    pub workload_tails: BTreeMap<String, Vec<String>>,
    /// `cpu-topology.txt`: each CPU's package, die, core and siblings.
    #[serde(default)]
    pub cpu_topology: Option<cpu_topology::CpuTopologyFacts>,
    /// `hugepages.txt`: huge pages per node and size.
    #[serde(default)]
    pub hugepages: Option<hugepages::HugepageCounts>,
    /// `hmat.txt`: each memory node's initiator, latency and bandwidth.
    #[serde(default)]
    pub hmat: Option<hmat::HmatFacts>,
    /// `host-domain.xml`: libvirt's live view of the domain's placement.
    #[serde(default)]
    pub host_domain: Option<host_domain::LiveDomain>,
    /// `host-threads.txt`: QEMU's threads on the host.
    #[serde(default)]
    pub host_threads: Option<host_threads::QemuThreads>,
}

/// Lines of a workload's output a report shows.
pub const WORKLOAD_TAIL_LINES: usize = 20;

fn tail_of(content: &str) -> Vec<String> {
    let lines: Vec<&str> = content.lines().collect();
    lines[lines.len().saturating_sub(WORKLOAD_TAIL_LINES)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

impl Observed {
    /// Reads the capture files found in `dir`. Files that are missing stay
    /// `None`; other files in the directory are ignored. Bytes that are not
    /// UTF-8 (serial line noise) are replaced, not rejected.
    ///
    /// # Errors
    /// [`ObserveError::Dir`] when `dir` is not a readable directory,
    /// [`ObserveError::Read`] when a capture file exists but cannot be read,
    /// [`ObserveError::Parse`] (with the file's path) when it cannot be parsed.
    pub fn from_dir(dir: &Path) -> Result<Observed, ObserveError> {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ObserveError::Dir {
                    path: dir.to_path_buf(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
                })
            }
            Err(source) => {
                return Err(ObserveError::Dir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
        let mut obs = Observed::default();
        let logs: Vec<String> = std::fs::read_dir(dir)
            .map_err(|source| ObserveError::Dir {
                path: dir.to_path_buf(),
                source,
            })?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| crate::capture::workload_of(n).is_some())
            .collect();
        let names = crate::capture::CAPTURES
            .iter()
            .map(|c| c.file.to_string())
            .chain(logs);
        for name in names {
            let name = name.as_str();
            let path = dir.join(name);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(ObserveError::Read { path, source }),
            };
            let content = String::from_utf8_lossy(&bytes);
            obs.insert(name, &content)
                .map_err(|e| e.in_file(path.display().to_string()))?;
        }
        Ok(obs)
    }

    /// Parses captures held in memory as (file name, content) pairs. A name
    /// may carry a directory (`capture/dmesg.txt`); only its last component
    /// is matched against [`crate::capture::CAPTURES`]. Unknown names are ignored; a
    /// name given twice keeps the last content.
    ///
    /// # Errors
    /// [`ObserveError::Parse`], naming the file as given, when a file
    /// cannot be parsed.
    pub fn from_files<I, N, C>(files: I) -> Result<Observed, ObserveError>
    where
        I: IntoIterator<Item = (N, C)>,
        N: AsRef<str>,
        C: AsRef<str>,
    {
        let mut obs = Observed::default();
        for (name, content) in files {
            let name = name.as_ref();
            let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
            obs.insert(base, content.as_ref())
                .map_err(|e| e.in_file(name))?;
        }
        Ok(obs)
    }

    /// True when no capture file was found.
    pub fn is_empty(&self) -> bool {
        self == &Observed::default()
    }

    /// Parses `content` as the capture file `name` (its spec's parser in
    /// [`crate::capture::CAPTURES`]) and stores it. Returns whether `name`
    /// is a parsed capture file.
    fn insert(&mut self, name: &str, content: &str) -> Result<bool, ParseError> {
        if let Some(w) = crate::capture::workload_of(name) {
            self.workload_tails.insert(w.to_string(), tail_of(content));
            return Ok(true);
        }
        let Some(parse) = crate::capture::capture_spec(name).and_then(|c| c.parse) else {
            return Ok(false);
        };
        parse(content, self).map_err(|e| e.in_file(name))?;
        Ok(true)
    }

    /// Parses every file of a capture set.
    ///
    /// # Errors
    /// [`ObserveError::Parse`] naming the file that cannot be parsed.
    pub fn from_set(set: &crate::capture::CaptureSet) -> Result<Observed, ObserveError> {
        Observed::from_files(
            set.files
                .iter()
                .map(|(n, f)| (n.as_str(), f.content.as_str())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BusNr, NodeId};

    macro_rules! fx {
        ($path:literal) => {
            (
                $path,
                include_str!(concat!("../../tests/fixtures/observe/", $path)),
            )
        };
    }

    /// Every fixture, with its path under tests/fixtures/observe.
    const FIXTURES: &[(&str, &str)] = &[
        fx!("lspci_tree/seed.txt"),
        fx!("lspci_tree/seed-reverse-order.txt"),
        fx!("lspci_tree/seed-old-pciids.txt"),
        fx!("lspci_tree/seed-no-names.txt"),
        fx!("lspci_tree/seed-no-pciids.txt"),
        fx!("lspci_tree/seed-nn.txt"),
        fx!("lspci_tree/seed-numeric.txt"),
        fx!("lspci_tree/sriov.txt"),
        fx!("lspci_tree/sriov-crlf-console.txt"),
        fx!("lspci_tree/extras.txt"),
        fx!("lspci_tree/single-root.txt"),
        fx!("lspci_tree/bridge-bus-list.txt"),
        fx!("lspci_tree/one-device.txt"),
        fx!("lspci_tree/host-virtio.txt"),
        fx!("lspci_tree/bad-truncated.txt"),
        fx!("lspci_tree/bad-orphan-continuation.txt"),
        fx!("lspci_tree/bad-address.txt"),
        fx!("lspci_tree/bad-not-lspci.txt"),
        fx!("lspci/seed.txt"),
        fx!("lspci/sriov.txt"),
        fx!("lspci/extras.txt"),
        fx!("lspci/extras-verbose.txt"),
        fx!("lspci/sriov-old-pciids.txt"),
        fx!("lspci/sriov-no-pciids.txt"),
        fx!("lspci/sriov-numeric.txt"),
        fx!("lspci/single-no-domain.txt"),
        fx!("lspci/host-virtio.txt"),
        fx!("lspci/bad-no-ids.txt"),
        fx!("lspci/bad-address.txt"),
        fx!("numactl/seed.txt"),
        fx!("numactl/seed-crlf.txt"),
        fx!("numactl/seed-numactl-2.0.19.txt"),
        fx!("numactl/seed-cpu-compress.txt"),
        fx!("numactl/cpuless-node.txt"),
        fx!("numactl/single-node.txt"),
        fx!("numactl/sparse-nodes.txt"),
        fx!("numactl/no-distances.txt"),
        fx!("numactl/libnuma-warning.txt"),
        fx!("numactl/no-numa.txt"),
        fx!("numactl/bad-short-row.txt"),
        fx!("numactl/bad-cpu.txt"),
        fx!("numactl/bad-not-numactl.txt"),
        fx!("iommu/seed.txt"),
        fx!("iommu/sriov.txt"),
        fx!("iommu/shared-group.txt"),
        fx!("iommu/empty.txt"),
        fx!("iommu/missing-dir-busybox.txt"),
        fx!("iommu/missing-dir-gnu.txt"),
        fx!("iommu/bad-group.txt"),
        fx!("iommu/bad-address.txt"),
        fx!("pci_numa/seed.txt"),
        fx!("pci_numa/seed-crlf-console.txt"),
        fx!("pci_numa/no-sysfs.txt"),
        fx!("pci_numa/bad-single-match.txt"),
        fx!("pci_numa/bad-value.txt"),
        fx!("dmesg/seed.txt"),
        fx!("dmesg/no-timestamps.txt"),
        fx!("dmesg/raw-levels.txt"),
        fx!("dmesg/printk-caller.txt"),
        fx!("dmesg/option-only.txt"),
        fx!("dmesg/no-intremap.txt"),
        fx!("dmesg/dmar-faults.txt"),
        fx!("dmesg/panic.txt"),
        fx!("kvm/present-busybox.txt"),
        fx!("kvm/present-gnu.txt"),
        fx!("kvm/root-only.txt"),
        fx!("kvm/absent-busybox.txt"),
        fx!("kvm/absent-gnu.txt"),
        fx!("kvm/regular-file.txt"),
        fx!("kvm/empty.txt"),
        fx!("cpu_topology/smt-6.12.txt"),
        fx!("cpu_topology/cern-6.1-tcg-no-smt.txt"),
        fx!("cpu_topology/two-sockets-6.1.txt"),
        fx!("hugepages/cern-6.12.txt"),
        fx!("hmat/memory-only-6.1.txt"),
        fx!("hugepages/two-sizes-three-nodes.txt"),
        fx!("hmat/memory-only-6.12.txt"),
        fx!("hmat/no-hmat-busybox.txt"),
        fx!("host_domain/pinned-libvirt-11.3.xml"),
        fx!("host_threads/pinned-tcg.txt"),
        fx!("dmesg/virtio-iommu.txt"),
    ];

    fn fixture(path: &str) -> &'static str {
        FIXTURES.iter().find(|(p, _)| *p == path).unwrap().1
    }

    /// The seed capture as the probe would leave it.
    fn seed_files() -> Vec<(String, String)> {
        [
            ("lspci-tree.txt", "lspci_tree/seed.txt"),
            ("lspci.txt", "lspci/seed.txt"),
            ("numactl.txt", "numactl/seed.txt"),
            ("iommu-groups.txt", "iommu/seed.txt"),
            ("pci-numa.txt", "pci_numa/seed.txt"),
            ("dmesg.txt", "dmesg/seed.txt"),
            ("kvm.txt", "kvm/present-busybox.txt"),
        ]
        .iter()
        .map(|(name, path)| (name.to_string(), fixture(path).to_string()))
        .collect()
    }

    /// Runs every parser on `input`; the point is that none panics.
    fn run_all(input: &str) {
        let _ = lspci_tree::parse(input);
        let _ = lspci::parse(input);
        let _ = numactl::parse(input);
        let _ = iommu::parse(input);
        let _ = pci_numa::parse(input);
        let _ = dmesg::parse(input);
        let _ = kvm::parse(input);
        let _ = cpu_topology::parse(input);
        let _ = hugepages::parse(input);
        let _ = hmat::parse(input);
        let _ = host_domain::parse(input);
        let _ = host_threads::parse(input);
    }

    /// xorshift64*, so the noise tests are repeatable without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn from_files_reads_the_seed_capture() {
        let obs = Observed::from_files(seed_files()).unwrap();
        let tree = obs.lspci_tree.as_ref().unwrap();
        assert_eq!(
            tree.root_buses(),
            vec![BusNr(0x00), BusNr(0xb4), BusNr(0xc8), BusNr(0xdc)]
        );
        assert_eq!(obs.lspci.as_ref().unwrap().len(), 25);
        assert_eq!(obs.numactl.as_ref().unwrap().nodes.len(), 3);
        assert_eq!(obs.iommu_groups.as_ref().unwrap().len(), 23);
        let numa = obs.pci_numa.as_ref().unwrap();
        assert_eq!(numa.get(&Bdf::new(0xdd, 0, 0)), Some(&2));
        assert!(obs.dmesg.as_ref().unwrap().iommu_active);
        assert!(obs.kvm.as_ref().unwrap().present);
        assert!(!obs.is_empty());
        // Every device of the tree is in lspci -nn and has a NUMA node.
        let flat: Vec<Bdf> = obs.lspci.as_ref().unwrap().iter().map(|d| d.bdf).collect();
        for d in tree.iter() {
            assert!(flat.contains(&d.bdf), "{}", d.bdf);
            assert!(numa.contains_key(&d.bdf), "{}", d.bdf);
        }
        // The observations serialise for JSON reports and read back.
        let json = serde_json::to_string(&obs).unwrap();
        let back: Observed = serde_json::from_str(&json).unwrap();
        assert_eq!(back, obs);
    }

    #[test]
    fn from_files_partial_unknown_and_paths() {
        let obs = Observed::from_files([
            ("capture/numactl.txt", fixture("numactl/seed.txt")),
            ("notes.txt", "anything"),
        ])
        .unwrap();
        assert_eq!(
            obs.numactl.unwrap().node(NodeId(1)).unwrap().size_mb,
            Some(1967)
        );
        assert!(obs.lspci_tree.is_none() && obs.dmesg.is_none() && obs.kvm.is_none());
        assert!(Observed::from_files(Vec::<(String, String)>::new())
            .unwrap()
            .is_empty());

        let e =
            Observed::from_files([("out/lspci-tree.txt", fixture("lspci_tree/bad-address.txt"))])
                .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("out/lspci-tree.txt line 5: expected a device like 00.0"),
            "{e}"
        );
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("nestlab-observe-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn from_dir_reads_what_exists() {
        let dir = temp_dir("ok");
        for (name, content) in seed_files() {
            if name != "kvm.txt" {
                std::fs::write(dir.join(&name), content).unwrap();
            }
        }
        // Serial noise that is not UTF-8 is tolerated.
        let mut dmesg = fixture("dmesg/seed.txt").as_bytes().to_vec();
        dmesg.extend_from_slice(b"\xff\xfe garbage\n");
        std::fs::write(dir.join("dmesg.txt"), dmesg).unwrap();
        std::fs::write(dir.join("README"), "not a capture").unwrap();
        let obs = Observed::from_dir(&dir).unwrap();
        assert!(obs.kvm.is_none());
        assert_eq!(obs, {
            let mut files = seed_files();
            files.retain(|(n, _)| n != "kvm.txt");
            let mut o = Observed::from_files(files).unwrap();
            o.dmesg.as_mut().unwrap().lines += 1;
            o
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn from_dir_errors() {
        let dir = temp_dir("bad");
        std::fs::write(
            dir.join("numactl.txt"),
            fixture("numactl/bad-short-row.txt"),
        )
        .unwrap();
        let e = Observed::from_dir(&dir).unwrap_err();
        let path = dir.join("numactl.txt").display().to_string();
        assert_eq!(
            e.to_string(),
            format!("{path} line 15: distance row for node 2 has 2 values for 3 nodes")
        );
        assert!(matches!(
            e,
            ObserveError::Parse(ParseError { line: 15, .. })
        ));

        let missing = dir.join("nope");
        let e = Observed::from_dir(&missing).unwrap_err();
        assert!(matches!(e, ObserveError::Dir { .. }), "{e}");
        let e = Observed::from_dir(&dir.join("numactl.txt")).unwrap_err();
        assert!(matches!(e, ObserveError::Dir { .. }), "{e}");

        // A capture file that is a directory cannot be read.
        std::fs::remove_file(dir.join("numactl.txt")).unwrap();
        std::fs::create_dir(dir.join("kvm.txt")).unwrap();
        let e = Observed::from_dir(&dir).unwrap_err();
        assert!(matches!(e, ObserveError::Read { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_parser_panics_on_truncated_fixtures() {
        for (_, content) in FIXTURES {
            let ends: Vec<usize> = content.char_indices().map(|(i, _)| i).collect();
            let step = (ends.len() / 150).max(1);
            for &end in ends.iter().step_by(step) {
                run_all(content.get(..end).unwrap_or_default());
                run_all(content.get(end..).unwrap_or_default());
            }
        }
    }

    #[test]
    fn no_parser_panics_on_mutated_fixtures() {
        let alphabet: Vec<char> = " -+|\\[]:.0123456789abcdefx\r\n\t<>()é😀/"
            .chars()
            .collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for (_, content) in FIXTURES {
            for _ in 0..40 {
                let mut chars: Vec<char> = content.chars().collect();
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(chars.len() + 1);
                    match rng.below(3) {
                        0 if at < chars.len() => {
                            chars.remove(at);
                        }
                        1 if at < chars.len() => {
                            chars[at] = alphabet[rng.below(alphabet.len())];
                        }
                        _ => chars.insert(at, alphabet[rng.below(alphabet.len())]),
                    }
                }
                let s: String = chars.into_iter().collect();
                run_all(&s);
            }
        }
    }

    #[test]
    fn no_parser_panics_on_random_bytes() {
        let mut rng = Rng(42);
        for _ in 0..2000 {
            let len = rng.below(300);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            run_all(&String::from_utf8_lossy(&bytes));
        }
        // Huge single lines.
        run_all(&"x".repeat(1 << 20));
        run_all(&"[".repeat(1 << 20));
        run_all(&format!("-{}", "+-[0000:00]-".repeat(50_000)));
        run_all(&" |".repeat(1 << 19));
    }

    #[test]
    fn error_display() {
        let e = ParseError::new("lspci-tree.txt", 7, "cannot read '...'");
        assert_eq!(e.to_string(), "lspci-tree.txt line 7: cannot read '...'");
        assert_eq!(
            e.in_file("x/y.txt").to_string(),
            "x/y.txt line 7: cannot read '...'"
        );
        assert_eq!(ParseError::at(3, "x").to_string(), "line 3: x");
    }
}
