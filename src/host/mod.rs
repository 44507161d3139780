//! The host boundary: what a run needs from the machine that runs its
//! virtual hosts, always asked through the libvirt connection, never read
//! from the machine nestlab itself runs on (which may be another one).
//!
//! - [`Host`], [`Guest`], [`ConsoleSource`]: the traits the runner talks
//!   to. [`adapter`] implements them over `virt` (the only module that
//!   imports it); tests use a scripted fake ([`fake`]).
//! - [`HostFacts`]: accelerator, CPU vendor, TSC frequency, QEMU and
//!   libvirt versions, CPUs, memory and NUMA cells, from the connection's
//!   capabilities.
//! - [`Artifact`] and [`Host::stage`]: boot files go through the host, which
//!   decides where they live for QEMU ([`ArtifactStore`]): a local
//!   connection uses the cache path as it is; a remote one uploads each file
//!   once into a libvirt storage pool there, as a volume named by its
//!   content, and the domain XML names the volume's path.
//!
//! About 950 lines, 160 of them tests: the traits, the facts read from the
//! connection and the URI and pool-name checks are the one boundary the
//! runner sees.

pub mod adapter;
pub mod proc;

pub use adapter::LibvirtHost;

#[cfg(test)]
pub mod fake;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::model::{Accel, AccelChoice, CpuSet, NodeSet, Topology};
use crate::observe::capabilities::{self, Capabilities};
use crate::observe::domcaps::DomainCaps;

/// A libvirt call that failed, with libvirt's error code kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {message}")]
pub struct HostError {
    /// What was being done (`cannot destroy nestlab-minimal-1a2b3c`).
    pub op: String,
    /// libvirt's error number (`virErrorNumber`), when the error came
    /// from libvirt.
    pub code: Option<i32>,
    /// libvirt's message.
    pub message: String,
}

/// `VIR_ERR_NO_DOMAIN`: the domain does not exist.
pub const VIR_ERR_NO_DOMAIN: i32 = 42;
/// `VIR_ERR_OPERATION_INVALID`: e.g. destroying a domain that is not running.
pub const VIR_ERR_OPERATION_INVALID: i32 = 55;
/// `VIR_ERR_NO_SUPPORT`: the daemon lacks the driver (no storage driver).
pub const VIR_ERR_NO_SUPPORT: i32 = 3;
/// `VIR_ERR_OPERATION_FAILED`: e.g. defining a pool that exists already.
pub const VIR_ERR_OPERATION_FAILED: i32 = 9;
/// `VIR_ERR_NO_STORAGE_POOL`: no pool of that name.
pub const VIR_ERR_NO_STORAGE_POOL: i32 = 49;
/// `VIR_ERR_NO_STORAGE_VOL`: no volume of that name.
pub const VIR_ERR_NO_STORAGE_VOL: i32 = 50;
/// `VIR_ERR_STORAGE_VOL_EXIST`: a volume of that name exists already.
pub const VIR_ERR_STORAGE_VOL_EXIST: i32 = 90;

impl HostError {
    /// An error that did not come from libvirt.
    pub fn other(op: impl Into<String>, message: impl Into<String>) -> HostError {
        HostError {
            op: op.into(),
            code: None,
            message: message.into(),
        }
    }
    /// Whether libvirt said the domain does not exist: the only answer that
    /// counts as "already gone".
    pub fn is_no_domain(&self) -> bool {
        self.code == Some(VIR_ERR_NO_DOMAIN)
    }
}

/// A domain nestlab created (it carries nestlab's metadata namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedDomain {
    /// Domain name.
    pub name: String,
    /// The `<nestlab:profile .../>` element, as libvirt returns it.
    pub metadata: String,
    /// Whether it runs.
    pub active: bool,
}

/// Console bytes as they arrive; the channel closing is the end of the
/// stream (after an `Err`, nothing more comes).
pub type ConsoleStream = tokio::sync::mpsc::Receiver<Result<Vec<u8>, HostError>>;

/// A source of console bytes.
pub trait ConsoleSource: Send {
    /// Reads console bytes, blocking until some arrive; `Ok(0)` is the end
    /// of the stream.
    ///
    /// # Errors
    /// When the stream breaks (the domain or the daemon went away).
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, HostError>;

    /// The stream as a channel, read as it arrives ([`pump_thread`] for a
    /// blocking source).
    fn into_stream(self: Box<Self>) -> ConsoleStream;
}

/// Reads a blocking console source on a thread of its own and forwards
/// what it reads; the thread ends with the stream or when the receiver is
/// dropped (at its next read).
pub fn pump_thread(mut src: Box<dyn ConsoleSource>) -> ConsoleStream {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(Ok(buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    rx
}

/// A started domain.
pub trait Guest: Send + Sync {
    /// Its name.
    fn name(&self) -> &str;
    /// Opens its serial console (do it while paused, so nothing is missed).
    ///
    /// # Errors
    /// When libvirt refuses.
    fn open_console(&self) -> Result<Box<dyn ConsoleSource>, HostError>;
    /// Lets a paused domain run.
    ///
    /// # Errors
    /// When libvirt refuses.
    fn resume(&self) -> Result<(), HostError>;
    /// Whether it still runs: `Ok(false)` only when libvirt says it is not
    /// running or does not exist any more.
    ///
    /// # Errors
    /// When libvirt cannot say (the daemon is gone).
    fn is_active(&self) -> Result<bool, HostError>;
    /// Destroys it; succeeds when it is gone afterwards (also when it was
    /// gone already: libvirt said "no such domain").
    ///
    /// # Errors
    /// When it may still exist afterwards.
    fn destroy(&self) -> Result<(), HostError>;
    /// Where the host placed it while it runs: libvirt's live domain XML
    /// and, through a local connection, QEMU's threads.
    ///
    /// # Errors
    /// When libvirt cannot give the live XML, or QEMU's threads cannot be
    /// read through a local connection.
    fn host_view(&self) -> Result<HostView, HostError>;
}

/// What the host shows of a running domain: where its pinning and memory
/// policy live. The texts are the capture files
/// [`crate::capture::HOST_DOMAIN`] and [`crate::capture::HOST_THREADS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostView {
    /// The live domain XML (virDomainGetXMLDesc; `virsh dumpxml`).
    pub domain_xml: String,
    /// QEMU's threads as `grep -E '^(Name|Cpus_allowed_list|Mems_allowed_list):'
    /// /proc/PID/task/*/status` prints them; `None` through a remote
    /// connection, where QEMU's `/proc` is on another machine.
    pub threads: Option<String>,
}

/// A file a domain boots from (kernel, initramfs, disk image), named by
/// its content so that a host can keep one copy per content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Where it is on this machine.
    pub path: PathBuf,
    /// A name unique for its content (`<hash>-initrd.img`).
    pub name: String,
}

/// The pool a remote host keeps nestlab's boot files in, unless told
/// otherwise (`--pool`, `$NESTLAB_POOL`); created through libvirt when
/// missing, as a `dir` pool at [`DEFAULT_POOL_DIR`].
pub const DEFAULT_POOL: &str = "nestlab";

/// Where the default pool keeps its files, on the host.
pub const DEFAULT_POOL_DIR: &str = "/var/lib/libvirt/images/nestlab";

/// Every volume nestlab creates is named `nestlab-<artifact name>`; prune
/// removes only volumes with this prefix.
pub const VOLUME_PREFIX: &str = "nestlab-";

/// A volume's upload finished when an empty volume of its name with this
/// suffix exists: a half-finished upload (the uploader died) is never
/// booted. libvirt cannot rename a volume, so there is no upload to a
/// temporary name.
pub const COMPLETE_SUFFIX: &str = ".complete";

/// The volume an artifact is stored in on a host's pool:
/// `nestlab-<artifact name>`, with any character a file name had better
/// not carry replaced by `_`.
pub fn volume_name(artifact: &str) -> String {
    let clean: String = artifact
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{VOLUME_PREFIX}{clean}")
}

/// Where a host keeps the boot files its domains read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactStore {
    /// QEMU runs on this machine: it reads the cache's files where they are.
    Local,
    /// A libvirt storage pool of this name on the host, filled through
    /// libvirt (`virStorageVolUpload`).
    Pool(String),
}

impl ArtifactStore {
    /// The store for a connection: local URIs read the cache directly,
    /// others upload into `pool` (default [`DEFAULT_POOL`]).
    pub fn for_uri(uri: &str, pool: Option<&str>) -> ArtifactStore {
        if is_local_uri(uri) {
            ArtifactStore::Local
        } else {
            ArtifactStore::Pool(pool.unwrap_or(DEFAULT_POOL).to_string())
        }
    }
}

impl fmt::Display for ArtifactStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArtifactStore::Local => f.write_str("this machine's cache"),
            ArtifactStore::Pool(p) => write!(f, "pool {p}"),
        }
    }
}

/// What making an artifact available on a host took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transfer {
    /// Nothing: the host reads this machine's file (a local connection).
    Local,
    /// Nothing: the host had it (an earlier run uploaded it).
    Present,
    /// Uploaded now.
    Uploaded {
        /// Bytes sent.
        bytes: u64,
        /// Seconds it took.
        secs: f64,
    },
    /// Another run was uploading it: waited for that one to finish.
    Waited {
        /// Seconds waited.
        secs: f64,
    },
}

/// An artifact made available on a host.
#[derive(Debug, Clone, PartialEq)]
pub struct Staged {
    /// The path QEMU on that host opens.
    pub path: String,
    /// What it took.
    pub transfer: Transfer,
}

/// Where a host's boot files go, and in what state (for `nestlab doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreStatus {
    /// This machine's cache, read in place.
    Local,
    /// A usable storage pool.
    Pool {
        /// Its name.
        name: String,
        /// Its type (`dir`).
        kind: String,
        /// Its target path on the host.
        path: String,
        /// Whether it is started (nestlab starts it when it is not).
        active: bool,
        /// nestlab's volumes in it.
        volumes: usize,
        /// Their size in bytes.
        bytes: u64,
    },
    /// No such pool yet.
    Missing {
        /// Its name.
        name: String,
        /// Where nestlab will create it on the first run (the default pool
        /// only; a pool named by the user must exist).
        will_create: Option<String>,
    },
    /// The pool cannot be used, and why (what to do is in the text).
    Unusable {
        /// Its name.
        name: String,
        /// Why, and what to do.
        why: String,
    },
}

/// One stored artifact `prune` removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedArtifact {
    /// The volume's name.
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What [`Host::prune_artifacts`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOutcome {
    /// Volumes removed.
    pub removed: Vec<PrunedArtifact>,
    /// Volumes kept because a domain on the host boots from them.
    pub in_use: Vec<String>,
    /// Volumes kept because they are the current appliance's.
    pub kept: Vec<String>,
}

/// What the runner needs from a hypervisor connection.
pub trait Host: Send + Sync {
    /// The URI it is connected to.
    fn uri(&self) -> &str;
    /// What the host offers (asked once per connection and kept).
    ///
    /// # Errors
    /// When the daemon does not answer or its capabilities cannot be read.
    fn facts(&self) -> Result<Arc<HostFacts>, HostError>;
    /// What a domain of hypervisor type `virttype` (`kvm`, `qemu`) can
    /// have there, for an x86_64 q35 machine.
    ///
    /// # Errors
    /// When the daemon does not answer or has no such hypervisor type.
    fn domain_caps(&self, virttype: &str) -> Result<DomainCaps, HostError>;
    /// Where this host keeps boot files.
    fn store(&self) -> ArtifactStore;
    /// Makes `artifact` available to QEMU on that host and says where: its
    /// path on this machine for a local connection; else a volume of the
    /// host's pool, uploaded unless a complete one is there already (a run
    /// uploading the same file meanwhile is waited for). `progress` is told
    /// the bytes sent and the total as an upload goes.
    ///
    /// # Errors
    /// When the file cannot be made available there (no pool and none can
    /// be made, the upload failed).
    fn stage(
        &self,
        artifact: &Artifact,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Staged, HostError>;
    /// The state of this host's [`ArtifactStore`].
    ///
    /// # Errors
    /// When the daemon does not answer.
    fn store_status(&self) -> Result<StoreStatus, HostError>;
    /// Removes the stored artifacts nestlab made (volumes named
    /// [`VOLUME_PREFIX`]...) except those named in `keep` (artifact names)
    /// and those a domain on the host boots from. A local store has
    /// nothing to prune here (see `nestlab appliance --prune`).
    ///
    /// # Errors
    /// When listing or deleting fails.
    fn prune_artifacts(&self, keep: &[String]) -> Result<PruneOutcome, HostError>;
    /// Whether the connection still works (false once the daemon died or
    /// went away: the host takes no more runs).
    fn is_alive(&self) -> bool;
    /// Creates a transient domain from XML, paused.
    ///
    /// # Errors
    /// When libvirt refuses the XML or cannot start QEMU.
    fn start_paused(&self, xml: &str) -> Result<Arc<dyn Guest>, HostError>;
    /// The domains carrying nestlab's metadata namespace.
    ///
    /// # Errors
    /// When listing fails.
    fn owned_domains(&self) -> Result<Vec<OwnedDomain>, HostError>;
    /// Destroys (and undefines, if persistent) a domain, only if it carries
    /// nestlab's metadata. Returns false when it is not nestlab's.
    ///
    /// # Errors
    /// When it does not exist or libvirt refuses.
    fn remove_owned(&self, name: &str) -> Result<bool, HostError>;
}

/// A `major.minor.micro` version as libvirt reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// From libvirt's packed form (`major * 1,000,000 + minor * 1,000 + micro`).
    pub fn from_packed(v: u64) -> Version {
        Version(
            (v / 1_000_000) as u32,
            ((v / 1000) % 1000) as u32,
            (v % 1000) as u32,
        )
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// A QEMU device a profile may need, with the QEMU version that brought it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QemuDevice {
    /// QEMU's device name (`igb`).
    pub name: &'static str,
    /// The first QEMU version that has it.
    pub since: Version,
}

/// The devices nestlab's profiles use and when QEMU got them. Only these
/// are asked about; libvirt does not list QEMU's devices, so the version
/// the connection reports decides.
pub const QEMU_DEVICES: &[QemuDevice] = &[
    QemuDevice {
        name: "pxb-pcie",
        since: Version(2, 7, 0),
    },
    QemuDevice {
        name: "pcie-root-port",
        since: Version(2, 9, 0),
    },
    QemuDevice {
        name: "intel-iommu",
        since: Version(2, 7, 0),
    },
    QemuDevice {
        name: "virtio-iommu-pci",
        since: Version(5, 0, 0),
    },
    QemuDevice {
        name: "e1000e",
        since: Version(2, 7, 0),
    },
    QemuDevice {
        name: "igb",
        since: Version(8, 0, 0),
    },
    QemuDevice {
        name: "virtio-net-pci",
        since: Version(2, 7, 0),
    },
];

/// The entry of [`QEMU_DEVICES`] for a device name.
pub fn qemu_device(name: &str) -> Option<&'static QemuDevice> {
    QEMU_DEVICES.iter().find(|d| d.name == name)
}

/// What a host offers, as its libvirt connection says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The connection's URI.
    pub uri: String,
    /// libvirt's version.
    pub libvirt: Version,
    /// The hypervisor's (QEMU's) version.
    pub qemu: Version,
    /// The capabilities document, parsed.
    pub caps: Capabilities,
}

impl HostFacts {
    /// Facts from a capabilities document and the versions.
    ///
    /// # Errors
    /// When the document cannot be read.
    pub fn from_capabilities(
        uri: &str,
        libvirt: Version,
        qemu: Version,
        caps_xml: &str,
    ) -> Result<HostFacts, HostError> {
        let caps = capabilities::parse(caps_xml).map_err(|e| {
            HostError::other(
                format!("cannot read the capabilities of {uri}"),
                e.to_string(),
            )
        })?;
        Ok(HostFacts {
            uri: uri.to_string(),
            libvirt,
            qemu,
            caps,
        })
    }

    /// Whether KVM can run guests there: libvirt offers `type='kvm'` AND
    /// the host CPU has vmx or svm. A paravirtual `/dev/kvm` without them
    /// (this project's CI machines) does not count: a normal guest kernel
    /// hangs under it.
    pub fn kvm_usable(&self) -> Result<&'static str, String> {
        match (self.caps.offers_kvm(), self.caps.virt_flag()) {
            (true, Some(f)) => Ok(f),
            (false, _) => Err("libvirt offers no KVM domains there (no usable /dev/kvm)".into()),
            (true, None) => {
                Err("the host CPU has neither vmx nor svm (a paravirtual /dev/kvm)".into())
            }
        }
    }

    /// Decides the accelerator, and says why.
    pub fn choose_accel(&self, choice: AccelChoice) -> (Accel, String) {
        match choice {
            AccelChoice::Fixed(a) => (a, format!("forced with --accel {a}")),
            AccelChoice::Auto => match self.kvm_usable() {
                Ok(f) => (
                    Accel::Kvm,
                    format!("KVM is offered and the host CPU has {f}"),
                ),
                Err(why) => (Accel::Tcg, why),
            },
        }
    }

    /// The KVM module the virtual host loads for its own `/dev/kvm`:
    /// under TCG the guest CPU is QEMU's `max`, which offers svm
    /// (`kvm_amd`); under KVM it is the host's CPU (`kvm_intel` with vmx,
    /// `kvm_amd` with svm). `None` when the host's CPU has neither.
    pub fn guest_kvm_module(&self, accel: Accel) -> Option<&'static str> {
        match accel {
            Accel::Tcg => Some("kvm_amd"),
            Accel::Kvm => match self.caps.virt_flag() {
                Some("vmx") => Some("kvm_intel"),
                Some(_) => Some("kvm_amd"),
                None => None,
            },
        }
    }

    /// The host's TSC frequency in Hz, when libvirt knows it.
    pub fn tsc_hz(&self) -> Option<u64> {
        self.caps.cpu.tsc_hz
    }

    /// Whether the host's QEMU has a device (by [`QEMU_DEVICES`]; an
    /// unknown device name counts as present).
    pub fn has_device(&self, name: &str) -> bool {
        qemu_device(name).map_or(true, |d| self.qemu >= d.since)
    }

    /// Host CPUs (from its NUMA cells).
    pub fn cpus(&self) -> usize {
        self.caps.cpu_count()
    }

    /// Host memory in MiB (from its NUMA cells).
    pub fn memory_mib(&self) -> u64 {
        self.caps.memory_kib() / 1024
    }

    /// Why this host cannot honour a topology's `[tuning]` (empty when it
    /// can): host CPUs, NUMA nodes or huge pages it does not have, as its
    /// capabilities say. Huge pages count what each node has reserved (the
    /// capabilities give totals, not what is free).
    pub fn cannot_honour(&self, t: &Topology) -> Vec<String> {
        let Some(tuning) = &t.profile.tuning else {
            return Vec::new();
        };
        let mut why = Vec::new();
        let cells = &self.caps.cells;
        let host_cpus = CpuSet::from_cpus(cells.iter().flat_map(|c| c.cpus.iter().map(|x| x.id)));
        let host_nodes = NodeSet::from_nodes(cells.iter().map(|c| c.id));
        let mut pinned: Vec<(String, &CpuSet)> = tuning
            .vcpupin
            .iter()
            .map(|(v, c)| (format!("vCPU {v}"), c))
            .collect();
        if let Some(e) = &tuning.emulatorpin {
            pinned.push(("the emulator threads".into(), e));
        }
        for (what, set) in pinned {
            let missing: Vec<String> = set
                .iter()
                .filter(|c| !host_cpus.contains(*c))
                .map(|c| c.to_string())
                .collect();
            if !missing.is_empty() {
                why.push(format!(
                    "{what} is pinned to host CPU {} but the host has CPUs {}",
                    missing.join(", "),
                    if host_cpus.is_empty() {
                        "unknown to libvirt".to_string()
                    } else {
                        host_cpus.to_string()
                    }
                ));
            }
        }
        let mut policies: Vec<(String, &NodeSet)> = Vec::new();
        if let Some(n) = &tuning.numatune {
            policies.push(("numatune".into(), &n.nodeset));
        }
        for (cell, n) in &tuning.memnodes {
            policies.push((format!("cell {cell}'s memnode"), &n.nodeset));
        }
        for (what, set) in policies {
            let missing: Vec<String> = set
                .iter()
                .filter(|n| !host_nodes.contains(*n))
                .map(|n| n.to_string())
                .collect();
            if !missing.is_empty() {
                why.push(format!(
                    "{what} asks for host node {} but the host has nodes {}",
                    missing.join(", "),
                    if host_nodes.is_empty() {
                        "unknown to libvirt".to_string()
                    } else {
                        host_nodes.to_string()
                    }
                ));
            }
        }
        for (cell, size) in &tuning.hugepages {
            let nodes = tuning
                .memnodes
                .get(cell)
                .map(|p| &p.nodeset)
                .or(tuning.numatune.as_ref().map(|p| &p.nodeset));
            let have: u64 = cells
                .iter()
                .filter(|c| nodes.map_or(true, |n| n.contains(c.id)))
                .filter_map(|c| c.pages_of(size.kib()))
                .sum();
            let need = t
                .profile
                .nodes
                .get(cell.0 as usize)
                .map_or(0, |n| n.memory.kib() / size.kib());
            if have < need {
                why.push(format!(
                    "cell {cell} needs {need} host {size} pages{}; the host has {have} reserved (vm.nr_hugepages)",
                    nodes.map(|n| format!(" on host nodes {n}")).unwrap_or_default()
                ));
            }
        }
        why
    }
}

/// Checks that `uri` looks like a libvirt URI (`driver[+transport]://[host[:port]]/path[?query]`),
/// without connecting: for arguments, before anything starts.
///
/// # Errors
/// What is wrong with it, in words.
pub fn check_uri(uri: &str) -> Result<(), String> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(format!(
            "'{uri}' is not a libvirt URI (expected driver[+transport]://[host]/path, e.g. qemu+ssh://host/system)"
        ));
    };
    let (driver, transport) = match scheme.split_once('+') {
        Some((d, t)) => (d, Some(t)),
        None => (scheme, None),
    };
    let word = |w: &str| {
        !w.is_empty()
            && w.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    if !word(driver) {
        return Err(format!("'{uri}': '{scheme}' is not a libvirt driver name"));
    }
    if let Some(t) = transport {
        const TRANSPORTS: &[&str] = &["unix", "tcp", "tls", "ssh", "libssh", "libssh2", "ext"];
        if !TRANSPORTS.contains(&t) {
            return Err(format!(
                "'{uri}': unknown transport '{t}' (one of {})",
                TRANSPORTS.join(", ")
            ));
        }
    }
    if uri
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(format!("'{uri}' contains spaces or control characters"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let path = path.split('?').next().unwrap_or("");
    if path.len() < 2 {
        return Err(format!(
            "'{uri}' has no path (expected e.g. {scheme}://{authority}/system)"
        ));
    }
    if let Some((_, port)) = authority.rsplit_once(':') {
        if !authority.ends_with(']') && port.parse::<u16>().is_err() {
            return Err(format!(
                "'{uri}': port '{port}' is not a number from 0 to 65535"
            ));
        }
    }
    if transport.is_some_and(|t| t != "unix") && authority.is_empty() {
        return Err(format!("'{uri}' names no host"));
    }
    Ok(())
}

/// Splits a list of URIs (`$NESTLAB_CONNECT`): separated by spaces, commas or
/// newlines; each checked with [`check_uri`], none twice.
///
/// # Errors
/// The first problem, naming the URI.
pub fn parse_uri_list(list: &str) -> Result<Vec<String>, String> {
    let uris: Vec<String> = list
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if uris.is_empty() {
        return Err("no URI in the list".into());
    }
    check_uris(&uris)?;
    Ok(uris)
}

/// Checks each URI and that none is given twice.
///
/// # Errors
/// The first problem, naming the URI.
pub fn check_uris(uris: &[String]) -> Result<(), String> {
    for (i, u) in uris.iter().enumerate() {
        check_uri(u)?;
        if uris[..i].contains(u) {
            return Err(format!("'{u}' is given twice"));
        }
    }
    Ok(())
}

/// Checks a storage pool name: what libvirt and a directory name accept.
///
/// # Errors
/// What is wrong with it.
pub fn check_pool_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a usable pool name (letters, digits, _ - . +; at most 64; not starting with . or -)"
        ))
    }
}

/// Whether a URI names the local machine (`qemu:///system`,
/// `qemu:///session`: no host part), so that paths on this machine are
/// paths for QEMU too.
pub fn is_local_uri(uri: &str) -> bool {
    match uri.split_once("://") {
        None => true,
        Some((scheme, rest)) => {
            let local_transport = scheme.split_once('+').map_or(true, |(_, t)| t == "unix");
            local_transport && (rest.starts_with('/') || rest.is_empty())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(xml: &str, qemu: Version) -> HostFacts {
        HostFacts::from_capabilities("qemu:///system", Version(11, 3, 0), qemu, xml).unwrap()
    }

    const CI: &str = include_str!("../../tests/fixtures/observe/capabilities/ci-host.xml");

    #[test]
    fn accel_from_the_connection() {
        let f = facts(CI, Version(10, 0, 2));
        let (a, why) = f.choose_accel(AccelChoice::Auto);
        assert_eq!(a, Accel::Tcg);
        assert!(why.contains("neither vmx nor svm"), "{why}");
        assert_eq!(f.choose_accel(AccelChoice::Fixed(Accel::Kvm)).0, Accel::Kvm);
        let vmx = CI.replace("<feature name='ss'/>", "<feature name='vmx'/>");
        let f = facts(&vmx, Version(10, 0, 2));
        assert_eq!(f.choose_accel(AccelChoice::Auto).0, Accel::Kvm);
        assert_eq!(f.guest_kvm_module(Accel::Kvm), Some("kvm_intel"));
        assert_eq!(f.guest_kvm_module(Accel::Tcg), Some("kvm_amd"));
        let no_kvm = vmx.replace("<domain type='kvm'/>", "");
        let f = facts(&no_kvm, Version(10, 0, 2));
        let (a, why) = f.choose_accel(AccelChoice::Auto);
        assert_eq!(a, Accel::Tcg);
        assert!(why.contains("no KVM"), "{why}");
    }

    #[test]
    fn devices_by_qemu_version() {
        assert!(facts(CI, Version(10, 0, 2)).has_device("igb"));
        assert!(!facts(CI, Version(7, 2, 0)).has_device("igb"));
        assert!(facts(CI, Version(7, 2, 0)).has_device("e1000e"));
        assert_eq!(facts(CI, Version(7, 2, 0)).tsc_hz(), Some(2_793_448_000));
        assert_eq!(Version::from_packed(10_000_002).to_string(), "10.0.2");
    }

    #[test]
    fn uri_checks() {
        for u in [
            "qemu:///system",
            "qemu:///session",
            "qemu+tcp://127.0.0.1:16599/system",
            "qemu+ssh://root@host.example/system?keyfile=/k&no_tty=1",
            "qemu+tls://[::1]/system",
            "qemu+unix:///system?socket=/run/x",
            "test:///default",
        ] {
            assert_eq!(check_uri(u), Ok(()), "{u}");
        }
        for (u, why) in [
            ("host.example", "not a libvirt URI"),
            ("qemu+carrier://h/system", "unknown transport 'carrier'"),
            ("QEMU:///system", "not a libvirt driver name"),
            ("qemu+ssh:///system", "names no host"),
            ("qemu+tcp://h:99999/system", "port '99999'"),
            ("qemu+tcp://h", "has no path"),
            ("qemu+tcp://h/", "has no path"),
            ("qemu:///sys tem", "spaces"),
        ] {
            let e = check_uri(u).unwrap_err();
            assert!(e.contains(why), "{u}: {e}");
        }
        assert_eq!(
            parse_uri_list(" qemu:///system,qemu+tcp://h/system\n").unwrap(),
            ["qemu:///system", "qemu+tcp://h/system"]
        );
        assert!(parse_uri_list(" , ").unwrap_err().contains("no URI"));
        assert!(parse_uri_list("qemu:///system qemu:///system")
            .unwrap_err()
            .contains("given twice"));
        assert!(check_pool_name("nestlab").is_ok());
        for bad in ["", "a/b", "-x", "../p", "x y"] {
            assert!(check_pool_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stores_by_uri() {
        assert_eq!(
            ArtifactStore::for_uri("qemu:///system", Some("p")),
            ArtifactStore::Local
        );
        assert_eq!(
            ArtifactStore::for_uri("qemu+tcp://h/system", None),
            ArtifactStore::Pool("nestlab".into())
        );
        assert_eq!(
            ArtifactStore::for_uri("qemu+ssh://h/system", Some("p")),
            ArtifactStore::Pool("p".into())
        );
    }

    #[test]
    fn local_uris() {
        for u in [
            "qemu:///system",
            "qemu:///session",
            "test:///default",
            "qemu+unix:///system",
        ] {
            assert!(is_local_uri(u), "{u}");
        }
        for u in [
            "qemu+tcp://127.0.0.1:16599/system",
            "qemu+ssh://root@host/system",
            "qemu://host/system",
        ] {
            assert!(!is_local_uri(u), "{u}");
        }
    }

    #[test]
    fn tuning_this_host_can_honour_or_not() {
        let f = facts(CI, Version(10, 0, 2));
        let topo = |name: &str| {
            crate::resolve::resolve(&crate::front::load_profile_arg(name).unwrap()).unwrap()
        };
        assert!(f.cannot_honour(&topo("pinned")).is_empty());
        assert!(f.cannot_honour(&topo("reference")).is_empty());
        let text = crate::front::SHIPPED
            .iter()
            .find(|(n, _)| *n == "pinned")
            .unwrap()
            .1;
        let big =
            text.replace(
                "vcpus = \"1\"\ncpus = \"1\"",
                "vcpus = \"1\"\ncpus = \"63\"",
            )
            .replace(
                "nodeset = \"0\"\n\n[[tuning.memnode]]",
                "nodeset = \"0-1\"\n\n[[tuning.memnode]]",
            ) + "\n[[tuning.hugepages]]\ncell = 0\nsize = \"2M\"\n";
        let t = crate::resolve::resolve(&crate::load_profile_str(&big, "big").unwrap()).unwrap();
        let why = f.cannot_honour(&t);
        assert_eq!(why.len(), 3, "{why:?}");
        assert_eq!(
            why[0],
            "vCPU 1 is pinned to host CPU 63 but the host has CPUs 0-1"
        );
        assert_eq!(
            why[1],
            "numatune asks for host node 1 but the host has nodes 0"
        );
        assert!(
            why[2].starts_with("cell 0 needs 512 host 2M pages on host nodes 0; the host has 0"),
            "{}",
            why[2]
        );
    }

    #[test]
    fn only_no_domain_is_gone() {
        let e = HostError {
            op: "x".into(),
            code: Some(VIR_ERR_NO_DOMAIN),
            message: "Domain not found".into(),
        };
        assert!(e.is_no_domain());
        assert!(!HostError::other("x", "connection closed").is_no_domain());
    }
}
