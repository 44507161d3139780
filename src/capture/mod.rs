//! The capture format: THE table of what is captured in a guest, how, and
//! which parser reads it.
//!
//! [`CAPTURES`] holds one [`CaptureSpec`] per file: its name, the POSIX sh
//! command whose output (stdout and stderr) it holds, its [`Scope`] (which
//! runs produce it) and the parser that turns it into part of
//! [`Observed`]. Everything else takes its names from here:
//!
//! - the agent ([`crate::guest::agent`]) runs the commands and prints each
//!   file in the console protocol; [`crate::guest::agent::capture_script`]
//!   is the by-hand version a user runs in any Linux guest;
//! - the console reader ([`crate::guest::protocol::console`]) reads them
//!   back into a [`CaptureSet`]; [`CaptureSet::read_dir`] reads a directory;
//! - [`Observed::from_set`] parses each with its spec's parser;
//! - [`crate::verify`] names a file only through a spec (a test checks
//!   that every file a check mentions is in the table).
//!
//! Adding a capture is one entry here plus its parser in
//! [`crate::observe`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::observe::{self, Observed, ParseError};

/// Which runs produce a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every run, and the by-hand capture script: the topology as the
    /// guest kernel shows it.
    Topology,
    /// Runs that assign devices to a nested guest (the agent's nested step;
    /// not a command a user can run by hand).
    Nested,
    /// Runs with workloads (the agent's workload step).
    Workload,
    /// Guests with libvirt inside (the Debian guest kind): libvirt's view
    /// of the virtual host, as OpenStack Nova reads it.
    Libvirt,
    /// Read on the host, not in the guest, while the domain runs (profiles
    /// with `[tuning]`): where libvirt and QEMU placed it. Its commands run on
    /// the host with the domain's name for `DOMAIN`.
    Host,
}

/// Parses a capture file's content into its part of [`Observed`].
pub type Parser = fn(&str, &mut Observed) -> Result<(), ParseError>;

/// One file of the capture format.
#[derive(Clone, Copy)]
pub struct CaptureSpec {
    /// File name inside a capture directory, e.g. `lspci.txt`.
    pub file: &'static str,
    /// A POSIX sh command (one line, runs under busybox sh and dash); its
    /// stdout and stderr together are the file's content. `None` for files
    /// the agent writes itself (the nested step's).
    pub command: Option<&'static str>,
    /// Which runs produce it.
    pub scope: Scope,
    /// Whether the command needs every CPU online (the agent boots the
    /// guest on one CPU and brings the others online while the first
    /// captures run).
    pub needs_all_cpus: bool,
    /// Parses the file's content into its part of [`Observed`]; `None` for
    /// a file kept for diagnosis only.
    pub parse: Option<Parser>,
}

impl fmt::Debug for CaptureSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureSpec")
            .field("file", &self.file)
            .field("command", &self.command)
            .field("scope", &self.scope)
            .field("needs_all_cpus", &self.needs_all_cpus)
            .field("parsed", &self.parse.is_some())
            .finish()
    }
}

impl PartialEq for CaptureSpec {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file
    }
}

/// `lspci -t -v`: the PCI tree with names.
pub const LSPCI_TREE: CaptureSpec = CaptureSpec {
    file: "lspci-tree.txt",
    command: Some("lspci -t -v"),
    scope: Scope::Topology,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.lspci_tree = Some(observe::lspci_tree::parse(s)?);
        Ok(())
    }),
};
/// `lspci -D -nn`: every function with domain, class and vendor:device ids.
pub const LSPCI: CaptureSpec = CaptureSpec {
    file: "lspci.txt",
    command: Some("lspci -D -nn"),
    scope: Scope::Topology,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.lspci = Some(observe::lspci::parse(s)?);
        Ok(())
    }),
};
/// `numactl --hardware`: NUMA nodes, their CPUs, sizes and distances.
pub const NUMACTL: CaptureSpec = CaptureSpec {
    file: "numactl.txt",
    command: Some("numactl --hardware"),
    scope: Scope::Topology,
    needs_all_cpus: true,
    parse: Some(|s, o| {
        o.numactl = Some(observe::numactl::parse(s)?);
        Ok(())
    }),
};
/// Each online CPU's package, die, core and SMT siblings (sysfs `topology/`).
pub const CPU_TOPOLOGY: CaptureSpec = CaptureSpec {
    file: "cpu-topology.txt",
    command: Some(
        "grep . /sys/devices/system/cpu/online \
         /sys/devices/system/cpu/cpu[0-9]*/topology/physical_package_id \
         /sys/devices/system/cpu/cpu[0-9]*/topology/die_id \
         /sys/devices/system/cpu/cpu[0-9]*/topology/core_id \
         /sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list",
    ),
    scope: Scope::Topology,
    needs_all_cpus: true,
    parse: Some(|s, o| {
        o.cpu_topology = Some(observe::cpu_topology::parse(s)?);
        Ok(())
    }),
};
/// The huge pages each node holds, by size.
pub const HUGEPAGES: CaptureSpec = CaptureSpec {
    file: "hugepages.txt",
    command: Some("grep . /sys/devices/system/node/node[0-9]*/hugepages/hugepages-*/nr_hugepages"),
    scope: Scope::Topology,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.hugepages = Some(observe::hugepages::parse(s)?);
        Ok(())
    }),
};
/// Each memory node's HMAT initiator and its latency and bandwidth
/// (access class 0).
pub const HMAT: CaptureSpec = CaptureSpec {
    file: "hmat.txt",
    command: Some(
        "ls -d /sys/devices/system/node/node[0-9]*/access0/initiators/node[0-9]*; \
         grep . /sys/devices/system/node/node[0-9]*/access0/initiators/*_*",
    ),
    scope: Scope::Topology,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.hmat = Some(observe::hmat::parse(s)?);
        Ok(())
    }),
};
/// Every `/sys/kernel/iommu_groups/<group>/devices/<bdf>` link.
pub const IOMMU_GROUPS: CaptureSpec = CaptureSpec {
    file: "iommu-groups.txt",
    command: Some("find /sys/kernel/iommu_groups/ -type l"),
    scope: Scope::Topology,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.iommu_groups = Some(observe::iommu::parse(s)?);
        Ok(())
    }),
};
/// `<sysfs path>/numa_node:<node>` for every PCI function.
pub const PCI_NUMA: CaptureSpec = CaptureSpec {
    file: "pci-numa.txt",
    command: Some("grep . /sys/bus/pci/devices/*/numa_node"),
    scope: Scope::Topology,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.pci_numa = Some(observe::pci_numa::parse(s)?);
        Ok(())
    }),
};
/// `<bdf> totalvfs=<n> numvfs=<n>` for every SR-IOV capable function.
pub const SRIOV: CaptureSpec = CaptureSpec {
    file: "sriov.txt",
    command: Some(
        "for f in /sys/bus/pci/devices/*/sriov_totalvfs; do [ -e \"$f\" ] || continue; \
         d=${f%/sriov_totalvfs}; \
         echo \"${d##*/} totalvfs=$(cat \"$f\") numvfs=$(cat \"$d/sriov_numvfs\")\"; done",
    ),
    scope: Scope::Topology,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.sriov = Some(observe::sriov::parse(s)?);
        Ok(())
    }),
};
/// `ls -l /dev/kvm` (says so when it does not exist).
pub const KVM: CaptureSpec = CaptureSpec {
    file: "kvm.txt",
    command: Some("ls -l /dev/kvm"),
    scope: Scope::Topology,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.kvm = Some(observe::kvm::parse(s));
        Ok(())
    }),
};
/// The kernel log.
pub const DMESG: CaptureSpec = CaptureSpec {
    file: "dmesg.txt",
    command: Some("dmesg"),
    scope: Scope::Topology,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.dmesg = Some(observe::dmesg::parse(s));
        Ok(())
    }),
};
/// What the nested step did: one line per assigned device, then the nested
/// boot's outcome (format: [`crate::observe::nested`]).
pub const NESTED: CaptureSpec = CaptureSpec {
    file: "nested.txt",
    command: None,
    scope: Scope::Nested,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.nested = Some(observe::nested::parse(s)?);
        Ok(())
    }),
};
/// The nested guest's `lspci -nn`.
pub const NESTED_LSPCI: CaptureSpec = CaptureSpec {
    file: "nested-lspci.txt",
    command: None,
    scope: Scope::Nested,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.nested_lspci = Some(observe::lspci::parse(s)?);
        Ok(())
    }),
};
/// The nested guest's serial console and its QEMU's messages, for
/// diagnosis (no check reads it).
pub const NESTED_CONSOLE: CaptureSpec = CaptureSpec {
    file: "nested-console.txt",
    command: None,
    scope: Scope::Nested,
    needs_all_cpus: false,
    parse: None,
};

/// One line per workload the agent ran (or skipped): `workload NAME
/// exit=CODE seconds=S timed_out=yes|no`, or `workload NAME skipped: WHY`
/// (format: [`crate::observe::workloads`]). Each workload's output is a
/// file of its own, [`workload_log`].
pub const WORKLOADS: CaptureSpec = CaptureSpec {
    file: "workloads.txt",
    command: None,
    scope: Scope::Workload,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.workloads = Some(observe::workloads::parse(s)?);
        Ok(())
    }),
};

/// `virsh capabilities` inside the virtual host: its NUMA cells, CPUs,
/// memory, distances and page sizes as libvirt reports them.
pub const VIRSH_CAPABILITIES: CaptureSpec = CaptureSpec {
    file: "virsh-capabilities.xml",
    command: Some("virsh -c qemu:///system capabilities"),
    scope: Scope::Libvirt,
    needs_all_cpus: true,
    parse: Some(|s, o| {
        o.libvirt_caps = Some(observe::capabilities::parse(s)?);
        Ok(())
    }),
};
/// `virsh domcapabilities --virttype kvm` inside the virtual host: whether
/// its libvirt can run KVM guests.
pub const VIRSH_DOMCAPS: CaptureSpec = CaptureSpec {
    file: "virsh-domcapabilities.xml",
    command: Some("virsh -c qemu:///system domcapabilities --virttype kvm"),
    scope: Scope::Libvirt,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.libvirt_domcaps = Some(observe::domcaps::parse(s).ok());
        Ok(())
    }),
};
/// `virsh nodedev-dumpxml` of every PCI device off bus 0: NUMA node, IOMMU
/// group and its members, SR-IOV functions, driver.
pub const VIRSH_NODEDEV: CaptureSpec = CaptureSpec {
    file: "virsh-nodedev.xml",
    command: Some(
        "for d in $(virsh -c qemu:///system nodedev-list --cap pci); do \
         case $d in pci_0000_00_*) continue ;; esac; \
         virsh -c qemu:///system nodedev-dumpxml \"$d\"; done",
    ),
    scope: Scope::Libvirt,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.libvirt_nodedevs = Some(observe::nodedev::parse(s)?);
        Ok(())
    }),
};

/// The prefix of a workload's output file: `workload-<name>.log`.
pub const WORKLOAD_LOG_PREFIX: &str = "workload-";
/// The suffix of a workload's output file.
pub const WORKLOAD_LOG_SUFFIX: &str = ".log";

/// The file a workload's output (stdout and stderr) goes to.
pub fn workload_log(name: &str) -> String {
    format!("{WORKLOAD_LOG_PREFIX}{name}{WORKLOAD_LOG_SUFFIX}")
}

/// The workload whose output file `file` is, if it is one.
pub fn workload_of(file: &str) -> Option<&str> {
    file.strip_prefix(WORKLOAD_LOG_PREFIX)?
        .strip_suffix(WORKLOAD_LOG_SUFFIX)
        .filter(|n| !n.is_empty())
}

/// The live domain XML, as libvirt holds it while the domain runs
/// (`virsh dumpxml DOMAIN`; the runner asks the connection for it).
pub const HOST_DOMAIN: CaptureSpec = CaptureSpec {
    file: "host-domain.xml",
    command: Some("virsh dumpxml DOMAIN"),
    scope: Scope::Host,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.host_domain = Some(observe::host_domain::parse(s)?);
        Ok(())
    }),
};
/// QEMU's threads on the host: name, allowed CPUs and memory nodes. Only a
/// local connection can read them (the runner reads the same files).
pub const HOST_THREADS: CaptureSpec = CaptureSpec {
    file: "host-threads.txt",
    command: Some(
        "grep -E '^(Name|Cpus_allowed_list|Mems_allowed_list):' \
         /proc/$(cat /run/libvirt/qemu/DOMAIN.pid)/task/*/status",
    ),
    scope: Scope::Host,
    needs_all_cpus: false,
    parse: Some(|s, o| {
        o.host_threads = Some(observe::host_threads::parse(s)?);
        Ok(())
    }),
};

/// The capture format, in the order the agent prints the files (the
/// topology's commands first: those that need every CPU online after those
/// that do not, dmesg last among them so that it holds what the other
/// commands made the kernel say; then the nested step's; then what the
/// runner reads on the host).
pub const CAPTURES: &[CaptureSpec] = &[
    LSPCI_TREE,
    LSPCI,
    HUGEPAGES,
    HMAT,
    NUMACTL,
    CPU_TOPOLOGY,
    IOMMU_GROUPS,
    PCI_NUMA,
    SRIOV,
    KVM,
    DMESG,
    NESTED,
    NESTED_LSPCI,
    NESTED_CONSOLE,
    VIRSH_CAPABILITIES,
    VIRSH_DOMCAPS,
    VIRSH_NODEDEV,
    WORKLOADS,
    HOST_DOMAIN,
    HOST_THREADS,
];

/// The specs of one scope, in table order.
pub fn in_scope(scope: Scope) -> impl Iterator<Item = &'static CaptureSpec> {
    CAPTURES.iter().filter(move |c| c.scope == scope)
}

/// The file names of the nested step, in the order it prints them.
pub const NESTED_FILES: &[&str] = &[NESTED.file, NESTED_LSPCI.file, NESTED_CONSOLE.file];
/// The files the runner reads on the host.
pub const HOST_FILES: &[&str] = &[HOST_DOMAIN.file, HOST_THREADS.file];

/// Name of the file in a capture directory that records each command's exit
/// code, one `<file> <code>` per line.
pub const EXIT_CODES_FILE: &str = "exit-codes.txt";
/// The capture spec of a file name from [`CAPTURES`].
pub fn capture_spec(file: &str) -> Option<&'static CaptureSpec> {
    CAPTURES.iter().find(|c| c.file == file)
}

/// Whether `name` can be a file of a capture set: a plain file name of
/// ASCII letters, digits, `.`, `_` and `-`, not starting with a dot.
pub fn is_valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Why a capture set could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A file name that cannot be part of a capture set.
    #[error("capture file name '{0}': must be a plain file name")]
    BadFileName(String),
    /// A capture directory could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A capture directory could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A directory holding none of the capture files.
    #[error("{0} is not a capture directory: it holds none of {files}", files = capture_file_list())]
    NotACaptureDir(PathBuf),
    /// A line of the exit-codes file that is not `<file> <code>`.
    #[error("{path}:{line}: expected '<file> <exit code>', found '{text}'")]
    BadExitCode {
        /// The exit-codes file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

fn capture_file_list() -> String {
    in_scope(Scope::Topology)
        .map(|c| c.file)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A step of /init that failed (an `error` marker); init went on after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// `insmod` or `sriov`.
    pub step: String,
    /// What failed and the command's own message, e.g.
    /// `kvm_intel: insmod: can't insert '...': Operation not supported`.
    pub detail: String,
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.detail)
    }
}

/// One captured file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapturedFile {
    /// The command's output (stdout and stderr), lines ending in `\n`.
    pub content: String,
    /// The command's exit code; `None` when it is not known (the console
    /// ended inside the file, or a capture directory without an entry in
    /// [`EXIT_CODES_FILE`]).
    pub exit_code: Option<i32>,
}

/// What one probe run captured: file name -> content, plus what the
/// appliance reported along the way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaptureSet {
    /// The files by name (names from [`CAPTURES`], normally).
    pub files: BTreeMap<String, CapturedFile>,
    /// Steps of /init that failed (empty for a capture directory).
    pub step_errors: Vec<StepError>,
    /// Guest uptime when /init started (console captures only).
    pub init_uptime: Option<Duration>,
    /// Guest uptime when the captures were done (console captures only).
    pub done_uptime: Option<Duration>,
    /// Whether the run had a nested step, so that [`NESTED_FILES`] belong
    /// to it: the console showed the `nested` marker, or a capture
    /// directory holds one of those files.
    pub nested: bool,
    /// Whether the run had a workload step ([`WORKLOADS`] belongs to it).
    pub workloads: bool,
    /// Whether the guest has libvirt inside (the [`Scope::Libvirt`] files
    /// belong to it).
    pub libvirt: bool,
    /// Whether the host's view ([`HOST_FILES`]) belongs to it: the runner
    /// read it, or a capture directory holds one of those files.
    pub host: bool,
}

impl CaptureSet {
    /// The content of a file.
    pub fn get(&self, file: &str) -> Option<&str> {
        self.files.get(file).map(|f| f.content.as_str())
    }

    /// The exit code of a file's command, when known.
    pub fn exit_code(&self, file: &str) -> Option<i32> {
        self.files.get(file).and_then(|f| f.exit_code)
    }

    /// The scopes whose files belong to this set: [`Scope::Topology`],
    /// [`Scope::Nested`] when the run had a nested step
    /// ([`nested`](Self::nested)), [`Scope::Host`] when the host was read
    /// ([`host`](Self::host)).
    pub fn scopes(&self) -> Vec<Scope> {
        let mut s = vec![Scope::Topology];
        if self.nested {
            s.push(Scope::Nested);
        }
        if self.workloads {
            s.push(Scope::Workload);
        }
        if self.libvirt {
            s.push(Scope::Libvirt);
        }
        if self.host {
            s.push(Scope::Host);
        }
        s
    }

    /// The files of [`scopes`](Self::scopes) this set lacks.
    pub fn missing(&self) -> Vec<&'static str> {
        let scopes = self.scopes();
        CAPTURES
            .iter()
            .filter(|c| scopes.contains(&c.scope))
            .map(|c| c.file)
            .filter(|f| !self.files.contains_key(*f))
            .collect()
    }

    /// Writes every file into `dir` (created if needed), plus
    /// [`EXIT_CODES_FILE`] with the known exit codes: the same layout
    /// [`capture_script`](crate::guest::agent::capture_script) makes.
    ///
    /// # Errors
    /// [`CaptureError::BadFileName`] for a name that is not a plain file name,
    /// [`CaptureError::Write`] naming the path that could not be written.
    pub fn write_dir(&self, dir: &Path) -> Result<(), CaptureError> {
        let werr = |path: PathBuf| move |source| CaptureError::Write { path, source };
        std::fs::create_dir_all(dir).map_err(werr(dir.to_path_buf()))?;
        let mut codes = String::new();
        for (name, file) in &self.files {
            if !is_valid_file_name(name) || name == EXIT_CODES_FILE {
                return Err(CaptureError::BadFileName(name.clone()));
            }
            let path = dir.join(name);
            std::fs::write(&path, &file.content).map_err(werr(path.clone()))?;
            if let Some(code) = file.exit_code {
                codes.push_str(&format!("{name} {code}\n"));
            }
        }
        let path = dir.join(EXIT_CODES_FILE);
        std::fs::write(&path, codes).map_err(werr(path.clone()))
    }

    /// Reads a capture directory: each file of [`CAPTURES`] that is present (invalid UTF-8 replaced, CRLF turned
    /// into LF) and the exit codes from [`EXIT_CODES_FILE`] when it is there.
    ///
    /// # Errors
    /// [`CaptureError::Read`] for a file that exists but cannot be read (or a
    /// directory that cannot), [`CaptureError::NotACaptureDir`] when none of
    /// the files is there, [`CaptureError::BadExitCode`] for a malformed line.
    pub fn read_dir(dir: &Path) -> Result<CaptureSet, CaptureError> {
        let rerr = |path: PathBuf| move |source| CaptureError::Read { path, source };
        let meta = std::fs::metadata(dir).map_err(rerr(dir.to_path_buf()))?;
        if !meta.is_dir() {
            return Err(CaptureError::NotACaptureDir(dir.to_path_buf()));
        }
        let mut set = CaptureSet::default();
        for spec in CAPTURES {
            let name = spec.file;
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let content = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
                    set.nested |= spec.scope == Scope::Nested;
                    set.workloads |= spec.scope == Scope::Workload;
                    set.libvirt |= spec.scope == Scope::Libvirt;
                    set.host |= spec.scope == Scope::Host;
                    set.files.insert(
                        name.to_string(),
                        CapturedFile {
                            content,
                            exit_code: None,
                        },
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CaptureError::Read { path, source: e }),
            }
        }
        let entries = std::fs::read_dir(dir).map_err(rerr(dir.to_path_buf()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if workload_of(&name).is_none() || !is_valid_file_name(&name) {
                continue;
            }
            let path = entry.path();
            let bytes = std::fs::read(&path).map_err(rerr(path.clone()))?;
            set.files.insert(
                name,
                CapturedFile {
                    content: String::from_utf8_lossy(&bytes).replace("\r\n", "\n"),
                    exit_code: None,
                },
            );
        }
        if set.files.is_empty() {
            return Err(CaptureError::NotACaptureDir(dir.to_path_buf()));
        }
        let path = dir.join(EXIT_CODES_FILE);
        let codes = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(CaptureError::Read { path, source: e }),
        };
        for (i, line) in codes.lines().enumerate() {
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            let bad = || CaptureError::BadExitCode {
                path: path.clone(),
                line: i + 1,
                text: text.to_string(),
            };
            let (name, code) = text.split_once(' ').ok_or_else(bad)?;
            let code: i32 = code.trim().parse().map_err(|_| bad())?;
            if let Some(f) = set.files.get_mut(name) {
                f.exit_code = Some(code);
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_unique_and_valid() {
        for (i, c) in CAPTURES.iter().enumerate() {
            assert!(is_valid_file_name(c.file), "{}", c.file);
            assert!(!c.command.unwrap_or("").contains('\n'), "{}", c.file);
            // Commands exactly for the files a user can capture by hand:
            // in the guest, or on the host for the host's view.
            assert_eq!(
                c.command.is_some(),
                matches!(c.scope, Scope::Topology | Scope::Libvirt | Scope::Host),
                "{}",
                c.file
            );
            assert_eq!(
                c.command.is_some_and(|c| c.contains("DOMAIN")),
                c.scope == Scope::Host,
                "{}",
                c.file
            );
            assert!(CAPTURES[..i].iter().all(|d| d.file != c.file), "{}", c.file);
            assert_ne!(c.file, EXIT_CODES_FILE);
        }
        assert_eq!(
            capture_spec(DMESG.file).and_then(|c| c.command),
            Some("dmesg")
        );
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "nestlab-probe-{tag}-{}-{}",
            std::process::id(),
            crate::guest::protocol::Nonce::generate()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn write_dir_read_dir_round_trip() {
        let mut set = CaptureSet::default();
        set.files.insert(
            LSPCI.file.into(),
            CapturedFile {
                content: "00:00.0 Host bridge\n".into(),
                exit_code: Some(0),
            },
        );
        set.files.insert(
            KVM.file.into(),
            CapturedFile {
                content: "ls: /dev/kvm: No such file or directory\n".into(),
                exit_code: Some(1),
            },
        );
        set.files.insert(
            DMESG.file.into(),
            CapturedFile {
                content: "partial".into(),
                exit_code: None,
            },
        );
        let dir = tempdir("rt");
        set.write_dir(&dir).unwrap();
        let back = CaptureSet::read_dir(&dir).unwrap();
        assert_eq!(back, set);
        assert_eq!(back.missing().len(), in_scope(Scope::Topology).count() - 3);
        assert!(!back.nested, "no nested file: not a nested run");
        // A nested run's files come back, and the missing ones are named.
        set.files.insert(
            NESTED.file.into(),
            CapturedFile {
                content: "boot failed: no /dev/kvm in the virtual host\n".into(),
                exit_code: Some(0),
            },
        );
        set.nested = true;
        set.write_dir(&dir).unwrap();
        let back = CaptureSet::read_dir(&dir).unwrap();
        assert_eq!(back, set);
        assert!(back.missing().contains(&NESTED_LSPCI.file));
        assert!(!back.missing().contains(&NESTED.file));
        std::fs::write(dir.join(EXIT_CODES_FILE), "lspci.txt zero\n").unwrap();
        assert!(matches!(
            CaptureSet::read_dir(&dir),
            Err(CaptureError::BadExitCode { line: 1, .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn read_dir_rejects_empty_and_missing() {
        let dir = tempdir("empty");
        assert!(matches!(
            CaptureSet::read_dir(&dir),
            Err(CaptureError::Read { .. })
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let err = CaptureSet::read_dir(&dir).unwrap_err();
        assert!(matches!(err, CaptureError::NotACaptureDir(_)));
        assert!(err.to_string().contains("lspci.txt"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn write_dir_rejects_bad_names() {
        let mut set = CaptureSet::default();
        set.files.insert("../x".into(), CapturedFile::default());
        let dir = tempdir("bad");
        assert!(matches!(
            set.write_dir(&dir),
            Err(CaptureError::BadFileName(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
