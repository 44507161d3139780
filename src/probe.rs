//! The in-guest side: what is captured, how, and how it comes back.
//!
//! [`CAPTURES`] is *the* definition of the capture format: a table of file
//! names and the POSIX sh command whose output (stdout and stderr) each file
//! holds. Everything else is generated from it:
//!
//! - [`capture_script`]: a sh script a user runs by hand in any Linux guest
//!   (or from cloud-init); it writes the files into a directory, the format
//!   `nestlab check --from DIR` reads ([`CaptureSet::read_dir`]).
//! - [`init_script`]: the probe appliance's `/init` (busybox sh). It reads
//!   its parameters from the kernel command line ([`ProbeParams`]), loads
//!   kernel modules, creates SR-IOV VFs, runs the captures and prints each
//!   one on the serial console framed by markers, then powers off.
//! - [`console::ConsoleReader`]: reads that console stream back, incrementally,
//!   into a [`CaptureSet`].
//!
//! # Markers
//!
//! Every marker is one line `::nestlab:<nonce>:<body>::`, where the nonce is
//! the random hex string given to the guest as `nestlab.nonce=` (so output of
//! an earlier boot, or any text a command prints, cannot pass for a marker):
//!
//! | body                      | meaning                                              |
//! |---------------------------|------------------------------------------------------|
//! | `init:<uptime>`           | /init started (guest uptime in seconds)              |
//! | `error:<step>:<detail>`   | a step failed (`insmod`, `sriov`); init goes on      |
//! | `begin:<file>`            | the output of the capture `<file>` follows           |
//! | `begin-gz:<file>`         | the same, as `gzip -c \| base64` lines               |
//! | `end:<file>:<exit code>`  | that output is complete                              |
//! | `nested:<count>`          | the nested step starts with `<count>` assigned devices; the [`NESTED_FILES`] follow |
//! | `alive`                   | printed every [`NESTED_HEARTBEAT_SECS`] during the nested step (which prints nothing else until it ends), so a stuck virtual host shows as silence |
//! | `done:<uptime>`           | every capture was printed                            |
//! | `shell`                   | (shell mode) an interactive shell now owns the console |
//!
//! A marker normally starts a line; when a command's output does not end in
//! a newline the marker follows it on the same line, and the reader keeps the
//! text before the marker as the file's last, unterminated line.

pub mod console;
mod script;

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::types::Bdf;

pub use console::{ConsoleError, ConsoleEvent, ConsoleReader};
pub use script::{
    capture_script, init_script, nested_init_script, NESTED_FIRMWARE_DIR, NESTED_INITRD_PATH,
    NESTED_KERNEL_PATH, NESTED_MARKER, NESTED_MEMORY_MIB, NESTED_QEMU_PATH,
};

/// One file of the capture format: its name and the command that fills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureSpec {
    /// File name inside a capture directory, e.g. `lspci.txt`.
    pub file: &'static str,
    /// A POSIX sh command (one line, runs under busybox sh and dash); its
    /// stdout and stderr together are the file's content.
    pub command: &'static str,
}

/// `lspci -t -v`: the PCI tree with names.
pub const FILE_LSPCI_TREE: &str = "lspci-tree.txt";
/// `lspci -D -nn`: every function with domain, class and vendor:device ids.
pub const FILE_LSPCI: &str = "lspci.txt";
/// `numactl --hardware`: NUMA nodes, their CPUs, sizes and distances.
pub const FILE_NUMACTL: &str = "numactl.txt";
/// Every `/sys/kernel/iommu_groups/<group>/devices/<bdf>` link.
pub const FILE_IOMMU_GROUPS: &str = "iommu-groups.txt";
/// `<sysfs path>/numa_node:<node>` for every PCI function.
pub const FILE_PCI_NUMA: &str = "pci-numa.txt";
/// `<bdf> totalvfs=<n> numvfs=<n>` for every SR-IOV capable function.
pub const FILE_SRIOV: &str = "sriov.txt";
/// `ls -l /dev/kvm` (says so when it does not exist).
pub const FILE_KVM: &str = "kvm.txt";
/// The kernel log.
pub const FILE_DMESG: &str = "dmesg.txt";
/// What the nested step did: one line per assigned device, then the nested
/// boot's outcome (format: [`crate::observe::nested`]).
pub const FILE_NESTED: &str = crate::observe::nested::FILE_NAME;
/// The nested guest's `lspci -nn`.
pub const FILE_NESTED_LSPCI: &str = crate::observe::nested::LSPCI_FILE_NAME;
/// The nested guest's serial console and its QEMU's messages, for
/// diagnosis (no check reads it).
pub const FILE_NESTED_CONSOLE: &str = "nested-console.txt";

/// The files the appliance's nested step prints after [`CAPTURES`], only
/// when devices are assigned (`nestlab.assign=`). They are not commands a
/// user can run by hand, so [`capture_script`] does not write them.
pub const NESTED_FILES: &[&str] = &[FILE_NESTED, FILE_NESTED_LSPCI, FILE_NESTED_CONSOLE];

/// The capture format, in the order the captures run (dmesg last, so that
/// it holds what the other commands made the kernel say).
pub const CAPTURES: &[CaptureSpec] = &[
    CaptureSpec {
        file: FILE_LSPCI_TREE,
        command: "lspci -t -v",
    },
    CaptureSpec {
        file: FILE_LSPCI,
        command: "lspci -D -nn",
    },
    CaptureSpec {
        file: FILE_NUMACTL,
        command: "numactl --hardware",
    },
    CaptureSpec {
        file: FILE_IOMMU_GROUPS,
        command: "find /sys/kernel/iommu_groups/ -type l",
    },
    CaptureSpec {
        file: FILE_PCI_NUMA,
        command: "grep . /sys/bus/pci/devices/*/numa_node",
    },
    CaptureSpec {
        file: FILE_SRIOV,
        command: "for f in /sys/bus/pci/devices/*/sriov_totalvfs; do [ -e \"$f\" ] || continue; \
                  d=${f%/sriov_totalvfs}; \
                  echo \"${d##*/} totalvfs=$(cat \"$f\") numvfs=$(cat \"$d/sriov_numvfs\")\"; done",
    },
    CaptureSpec {
        file: FILE_KVM,
        command: "ls -l /dev/kvm",
    },
    CaptureSpec {
        file: FILE_DMESG,
        command: "dmesg",
    },
];

/// Name of the file in a capture directory that records each command's exit
/// code, one `<file> <code>` per line.
pub const EXIT_CODES_FILE: &str = "exit-codes.txt";

/// Where the appliance keeps the module load chains /init reads.
///
/// One line per module that `nestlab.modules=` may name:
/// `<name> <dep>=<path> ... <name>=<path>`, names with `_` (not `-`), the
/// files in load order (dependencies first, the module itself last). A
/// module built into the kernel has a line with its name alone.
pub const MODULES_FILE: &str = "/etc/nestlab/modules";

/// A sh fragment /init sources before anything else when it exists (the
/// appliance puts `export LD_LIBRARY_PATH=...` there).
pub const ENV_FILE: &str = "/etc/nestlab/env";

/// Where the appliance carries [`capture_script`], for use from the shell.
pub const CAPTURE_SCRIPT_PATH: &str = "/bin/nestlab-capture";

/// The busybox applets [`init_script`], the [`CAPTURES`] commands and the
/// shell mode use; the appliance links each to busybox.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "[", "awk", "base64", "basename", "cat", "chmod", "cp", "cttyhack", "cut", "date", "dd",
    "dirname", "dmesg", "echo", "env", "false", "find", "free", "grep", "gzip", "head", "hexdump",
    "insmod", "ip", "kill", "less", "ln", "ls", "lsmod", "mkdir", "mknod", "mount", "mv", "nproc",
    "poweroff", "printf", "ps", "readlink", "reboot", "rm", "rmmod", "sed", "setsid", "sh",
    "sleep", "sort", "stat", "sync", "tail", "taskset", "tee", "test", "timeout", "tr", "true",
    "umount", "uname", "uniq", "vi", "wc", "xargs",
];

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

/// Why a probe value could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A nonce that is not 1 to 64 hex digits.
    #[error("nonce '{0}': must be 1 to 64 hex digits")]
    BadNonce(String),
    /// A mode other than `probe` and `shell`.
    #[error("mode '{0}': must be 'probe' or 'shell'")]
    BadMode(String),
    /// A module name that cannot go on the kernel command line.
    #[error("module name '{0}': only letters, digits, '_' and '-' are allowed")]
    BadModuleName(String),
    /// A file name that cannot be part of a capture set.
    #[error("capture file name '{0}': must be a plain file name")]
    BadFileName(String),
    /// An assigned device id that is not `nic<N>` or `nic<N>.vf<M>`.
    #[error("assigned device id '{0}': must be nic<N> or nic<N>.vf<M>")]
    BadAssignId(String),
    /// An assigned device address out of the PCI ranges.
    #[error("assigned device {id}: address {bdf} is not a valid PCI address (slot 0..=31, function 0..=7)")]
    BadAssignAddress {
        /// The device id.
        id: String,
        /// The address as given.
        bdf: String,
    },
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
    CAPTURES
        .iter()
        .map(|c| c.file)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The random token that makes markers unforgeable: 1 to 64 lowercase hex
/// digits, passed to the guest as `nestlab.nonce=`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nonce(String);

impl Nonce {
    /// A fresh 64-bit nonce (16 hex digits) from the process's random
    /// hashing keys, the clock and the process id.
    pub fn generate() -> Nonce {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        h.write_u32(std::process::id());
        Nonce(format!("{:016x}", h.finish()))
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Nonce {
    type Err = ProbeError;
    /// Reads 1 to 64 hex digits (either case; kept lowercase).
    fn from_str(s: &str) -> Result<Self, ProbeError> {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ProbeError::BadNonce(s.to_string()));
        }
        Ok(Nonce(s.to_ascii_lowercase()))
    }
}

/// What the appliance does after the captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Power off.
    #[default]
    Probe,
    /// Give the console an interactive shell; power off when it exits.
    Shell,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Probe => "probe",
            Mode::Shell => "shell",
        })
    }
}

impl FromStr for Mode {
    type Err = ProbeError;
    fn from_str(s: &str) -> Result<Self, ProbeError> {
        match s {
            "probe" => Ok(Mode::Probe),
            "shell" => Ok(Mode::Shell),
            _ => Err(ProbeError::BadMode(s.to_string())),
        }
    }
}

/// Create `num_vfs` virtual functions on the SR-IOV physical function `pf`
/// (after the modules are loaded, so the PF's driver must be among them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SriovRequest {
    /// The physical function as the guest sees it.
    pub pf: Bdf,
    /// How many VFs to create.
    pub num_vfs: u16,
}

/// A device the probe hands to vfio-pci and assigns to the nested guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The profile's id for it: `nic8`, `nic9.vf0`.
    pub id: String,
    /// Its address in the virtual host.
    pub bdf: Bdf,
}

/// Whether `id` is `nic<N>` or `nic<N>.vf<M>` (decimal, no leading zeros,
/// at most 3 digits each): the ids [`crate::validate::DeviceRef`] prints.
pub fn is_valid_assign_id(id: &str) -> bool {
    fn number(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 3
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'))
    }
    let Some(rest) = id.strip_prefix("nic") else {
        return false;
    };
    match rest.split_once(".vf") {
        Some((nic, vf)) => number(nic) && number(vf),
        None => number(rest),
    }
}

/// Seconds the nested step waits for one run of the nested guest unless
/// told otherwise (`nestlab.nested_timeout=`); a run that times out is
/// tried once more. It takes 10 to 12 s under TCG on the project's 2-core
/// machines.
pub const DEFAULT_NESTED_TIMEOUT_SECS: u32 = 45;

/// Seconds between the `alive` markers the appliance prints while its
/// nested step runs.
pub const NESTED_HEARTBEAT_SECS: u32 = 5;

/// The appliance's parameters, as they go on the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeParams {
    /// Marks this boot's markers.
    pub nonce: Nonce,
    /// Modules to load, in order (each after its dependencies).
    pub modules: Vec<String>,
    /// VFs to create.
    pub sriov: Vec<SriovRequest>,
    /// Devices to bind to vfio-pci and assign to one nested guest, started
    /// after the captures (empty: no nested step).
    pub assign: Vec<Assignment>,
    /// How long one run of the nested guest may take, from its QEMU's start
    /// to its power-off, before the probe kills it (and tries once more).
    pub nested_timeout_secs: u32,
    /// Power off or drop to a shell after the captures.
    pub mode: Mode,
}

impl ProbeParams {
    /// Probe mode, nothing to load, no VFs, no nested guest.
    pub fn new(nonce: Nonce) -> Self {
        ProbeParams {
            nonce,
            modules: Vec::new(),
            sriov: Vec::new(),
            assign: Vec::new(),
            nested_timeout_secs: DEFAULT_NESTED_TIMEOUT_SECS,
            mode: Mode::Probe,
        }
    }

    /// The files the appliance prints with these parameters: [`CAPTURES`],
    /// then [`NESTED_FILES`] when devices are assigned.
    pub fn expected_files(&self) -> Vec<&'static str> {
        let mut files: Vec<&'static str> = CAPTURES.iter().map(|c| c.file).collect();
        if !self.assign.is_empty() {
            files.extend_from_slice(NESTED_FILES);
        }
        files
    }

    /// The `nestlab.*` kernel parameters, space separated, e.g.
    /// `nestlab.nonce=1f2e nestlab.modules=igb nestlab.sriov=0000:b5:00.0:3
    /// nestlab.assign=nic0@0000:b5:00.0,nic1.vf0@0000:c9:10.0
    /// nestlab.nested_timeout=120 nestlab.mode=probe` (`assign` and
    /// `nested_timeout` only when devices are assigned).
    ///
    /// # Errors
    /// [`ProbeError::BadModuleName`] for a module name with other characters
    /// than letters, digits, `_` and `-`; [`ProbeError::BadAssignId`] for an
    /// assigned id that is not `nic<N>[.vf<M>]`;
    /// [`ProbeError::BadAssignAddress`] for a slot above 31 or a function
    /// above 7.
    pub fn to_cmdline(&self) -> Result<String, ProbeError> {
        let mut out = format!("nestlab.nonce={}", self.nonce);
        if !self.modules.is_empty() {
            for m in &self.modules {
                if m.is_empty()
                    || !m
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(ProbeError::BadModuleName(m.clone()));
                }
            }
            out.push_str(" nestlab.modules=");
            out.push_str(&self.modules.join(","));
        }
        if !self.sriov.is_empty() {
            let list: Vec<String> = self
                .sriov
                .iter()
                .map(|r| format!("{}:{}", r.pf, r.num_vfs))
                .collect();
            out.push_str(" nestlab.sriov=");
            out.push_str(&list.join(","));
        }
        if !self.assign.is_empty() {
            let mut list = Vec::new();
            for a in &self.assign {
                if !is_valid_assign_id(&a.id) {
                    return Err(ProbeError::BadAssignId(a.id.clone()));
                }
                if a.bdf.slot > 31 || a.bdf.function > 7 {
                    return Err(ProbeError::BadAssignAddress {
                        id: a.id.clone(),
                        bdf: a.bdf.to_string(),
                    });
                }
                list.push(format!("{}@{}", a.id, a.bdf));
            }
            out.push_str(" nestlab.assign=");
            out.push_str(&list.join(","));
            out.push_str(&format!(
                " nestlab.nested_timeout={}",
                self.nested_timeout_secs.max(1)
            ));
        }
        out.push_str(&format!(" nestlab.mode={}", self.mode));
        Ok(out)
    }
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

    /// The files this set lacks: of [`CAPTURES`], and of [`NESTED_FILES`]
    /// when the run had a nested step ([`nested`](Self::nested)).
    pub fn missing(&self) -> Vec<&'static str> {
        let nested: &[&'static str] = if self.nested { NESTED_FILES } else { &[] };
        CAPTURES
            .iter()
            .map(|c| c.file)
            .chain(nested.iter().copied())
            .filter(|f| !self.files.contains_key(*f))
            .collect()
    }

    /// Writes every file into `dir` (created if needed), plus
    /// [`EXIT_CODES_FILE`] with the known exit codes: the same layout
    /// [`capture_script`] makes.
    ///
    /// # Errors
    /// [`ProbeError::BadFileName`] for a name that is not a plain file name,
    /// [`ProbeError::Write`] naming the path that could not be written.
    pub fn write_dir(&self, dir: &Path) -> Result<(), ProbeError> {
        let werr = |path: PathBuf| move |source| ProbeError::Write { path, source };
        std::fs::create_dir_all(dir).map_err(werr(dir.to_path_buf()))?;
        let mut codes = String::new();
        for (name, file) in &self.files {
            if !is_valid_file_name(name) || name == EXIT_CODES_FILE {
                return Err(ProbeError::BadFileName(name.clone()));
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

    /// Reads a capture directory: each file of [`CAPTURES`] and
    /// [`NESTED_FILES`] that is present (invalid UTF-8 replaced, CRLF turned
    /// into LF) and the exit codes from [`EXIT_CODES_FILE`] when it is there.
    ///
    /// # Errors
    /// [`ProbeError::Read`] for a file that exists but cannot be read (or a
    /// directory that cannot), [`ProbeError::NotACaptureDir`] when none of
    /// the files is there, [`ProbeError::BadExitCode`] for a malformed line.
    pub fn read_dir(dir: &Path) -> Result<CaptureSet, ProbeError> {
        let rerr = |path: PathBuf| move |source| ProbeError::Read { path, source };
        let meta = std::fs::metadata(dir).map_err(rerr(dir.to_path_buf()))?;
        if !meta.is_dir() {
            return Err(ProbeError::NotACaptureDir(dir.to_path_buf()));
        }
        let mut set = CaptureSet::default();
        let names = CAPTURES
            .iter()
            .map(|c| c.file)
            .chain(NESTED_FILES.iter().copied());
        for name in names {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let content = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
                    set.nested |= NESTED_FILES.contains(&name);
                    set.files.insert(
                        name.to_string(),
                        CapturedFile {
                            content,
                            exit_code: None,
                        },
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ProbeError::Read { path, source: e }),
            }
        }
        if set.files.is_empty() {
            return Err(ProbeError::NotACaptureDir(dir.to_path_buf()));
        }
        let path = dir.join(EXIT_CODES_FILE);
        let codes = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(ProbeError::Read { path, source: e }),
        };
        for (i, line) in codes.lines().enumerate() {
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            let bad = || ProbeError::BadExitCode {
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
            assert!(!c.command.contains('\n'), "{}", c.file);
            assert!(CAPTURES[..i].iter().all(|d| d.file != c.file), "{}", c.file);
            assert_ne!(c.file, EXIT_CODES_FILE);
        }
        assert_eq!(capture_spec(FILE_DMESG).map(|c| c.command), Some("dmesg"));
    }

    #[test]
    fn nonce_parse_and_generate() {
        assert_eq!(
            "ABC123".parse::<Nonce>().map(|n| n.to_string()).ok(),
            Some("abc123".into())
        );
        assert!(matches!("".parse::<Nonce>(), Err(ProbeError::BadNonce(_))));
        assert!(matches!(
            "12:3".parse::<Nonce>(),
            Err(ProbeError::BadNonce(_))
        ));
        assert!(matches!("g".parse::<Nonce>(), Err(ProbeError::BadNonce(_))));
        let a = Nonce::generate();
        let b = Nonce::generate();
        assert_eq!(a.as_str().len(), 16);
        assert_ne!(a, b);
        assert!(a.as_str().parse::<Nonce>().is_ok());
    }

    #[test]
    fn params_to_cmdline() {
        let mut p = ProbeParams::new("abc".parse().unwrap());
        assert_eq!(
            p.to_cmdline().unwrap(),
            "nestlab.nonce=abc nestlab.mode=probe"
        );
        p.modules = vec!["igb".into(), "kvm-amd".into()];
        p.sriov = vec![SriovRequest {
            pf: Bdf::new(0xb5, 0, 0),
            num_vfs: 3,
        }];
        p.mode = Mode::Shell;
        assert_eq!(
            p.to_cmdline().unwrap(),
            "nestlab.nonce=abc nestlab.modules=igb,kvm-amd nestlab.sriov=0000:b5:00.0:3 nestlab.mode=shell"
        );
        p.modules.push("a b".into());
        assert!(matches!(p.to_cmdline(), Err(ProbeError::BadModuleName(m)) if m == "a b"));
        p.modules.pop();
        p.mode = Mode::Probe;
        p.assign = vec![
            Assignment {
                id: "nic8".into(),
                bdf: Bdf::new(0xdf, 0, 0),
            },
            Assignment {
                id: "nic9.vf0".into(),
                bdf: Bdf::new(0xc9, 0x10, 0),
            },
        ];
        p.nested_timeout_secs = 90;
        assert_eq!(
            p.to_cmdline().unwrap(),
            "nestlab.nonce=abc nestlab.modules=igb,kvm-amd nestlab.sriov=0000:b5:00.0:3 \
             nestlab.assign=nic8@0000:df:00.0,nic9.vf0@0000:c9:10.0 nestlab.nested_timeout=90 nestlab.mode=probe"
        );
        assert_eq!(
            p.expected_files().len(),
            CAPTURES.len() + NESTED_FILES.len()
        );
        for bad in [
            "nic",
            "nic8 x",
            "nic08",
            "nic8.vf",
            "nic8.vf0.vf1",
            "NIC8",
            "nic8@x",
            "nic1234",
            "eth0",
            "",
        ] {
            p.assign[0].id = bad.into();
            assert!(
                matches!(p.to_cmdline(), Err(ProbeError::BadAssignId(ref m)) if m == bad),
                "{bad}"
            );
        }
        p.assign[0].id = "nic0".into();
        p.assign[1].bdf.slot = 32;
        assert!(matches!(
            p.to_cmdline(),
            Err(ProbeError::BadAssignAddress { ref id, .. }) if id == "nic9.vf0"
        ));
        p.assign[1].bdf = Bdf::new(0xc9, 0x10, 8);
        assert!(p.to_cmdline().is_err());
        p.assign.clear();
        assert!(!p.to_cmdline().unwrap().contains("nested"));
        assert_eq!(p.expected_files().len(), CAPTURES.len());
        assert_eq!("shell".parse::<Mode>().unwrap(), Mode::Shell);
        assert!("x".parse::<Mode>().is_err());
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "nestlab-probe-{tag}-{}-{}",
            std::process::id(),
            Nonce::generate()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn write_dir_read_dir_round_trip() {
        let mut set = CaptureSet::default();
        set.files.insert(
            FILE_LSPCI.into(),
            CapturedFile {
                content: "00:00.0 Host bridge\n".into(),
                exit_code: Some(0),
            },
        );
        set.files.insert(
            FILE_KVM.into(),
            CapturedFile {
                content: "ls: /dev/kvm: No such file or directory\n".into(),
                exit_code: Some(1),
            },
        );
        set.files.insert(
            FILE_DMESG.into(),
            CapturedFile {
                content: "partial".into(),
                exit_code: None,
            },
        );
        let dir = tempdir("rt");
        set.write_dir(&dir).unwrap();
        let back = CaptureSet::read_dir(&dir).unwrap();
        assert_eq!(back, set);
        assert_eq!(back.missing().len(), CAPTURES.len() - 3);
        assert!(!back.nested, "no nested file: not a nested run");
        // A nested run's files come back, and the missing ones are named.
        set.files.insert(
            FILE_NESTED.into(),
            CapturedFile {
                content: "boot failed: no /dev/kvm in the virtual host\n".into(),
                exit_code: Some(0),
            },
        );
        set.nested = true;
        set.write_dir(&dir).unwrap();
        let back = CaptureSet::read_dir(&dir).unwrap();
        assert_eq!(back, set);
        assert!(back.missing().contains(&FILE_NESTED_LSPCI));
        assert!(!back.missing().contains(&FILE_NESTED));
        std::fs::write(dir.join(EXIT_CODES_FILE), "lspci.txt zero\n").unwrap();
        assert!(matches!(
            CaptureSet::read_dir(&dir),
            Err(ProbeError::BadExitCode { line: 1, .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn read_dir_rejects_empty_and_missing() {
        let dir = tempdir("empty");
        assert!(matches!(
            CaptureSet::read_dir(&dir),
            Err(ProbeError::Read { .. })
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let err = CaptureSet::read_dir(&dir).unwrap_err();
        assert!(matches!(err, ProbeError::NotACaptureDir(_)));
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
            Err(ProbeError::BadFileName(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
