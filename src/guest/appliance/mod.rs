//! Building the probe appliance: a guest kernel plus a small initramfs
//! whose `/init` runs the probe (see [`crate::capture`]).
//!
//! [`build`] finds a kernel ([`locate_kernel`]), plans the initramfs
//! (busybox, the host's lspci and numactl with their shared libraries,
//! pci.ids, the kernel modules of [`DEFAULT_MODULES`] with their dependency
//! chains, `/init`), hashes everything that goes in, and writes
//! `<cache>/appliance/<hash>/{vmlinuz,vmlinux,initrd.img,manifest.txt}`
//! unless that entry exists already. Entries are built in a temporary directory and
//! renamed into place, so a crash never leaves half an entry and two
//! concurrent builds do not disturb each other. Directories are 0755 and
//! files 0644, so libvirt's qemu user can read them.
//!
//! The initramfs is an uncompressed cpio "newc" archive written by
//! [`cpio::CpioWriter`]: under TCG the kernel unpacks 18 MB of it in about
//! 0.2 s, where gzip or zstd compression makes that 0.4 to 0.6 s.
//!
//! Profiles with `[nested]` boot the nested flavour ([`NestedFlavour`],
//! [`Appliance::initrd_for`]): the same archive followed by an LZ4
//! compressed one ([`lz4`]) with `qemu-system-x86_64`, its libraries, its
//! firmware and the nested guest's kernel and initramfs. Other profiles
//! keep booting the small base initramfs.
//!
//! The kernel to boot ([`Appliance::kernel`]) is, when possible, the ELF
//! `vmlinux` taken out of the bzImage ([`bzimage::pvh_kernel`]): QEMU boots
//! it through PVH without the guest decompressing itself, which halves a
//! probe boot under TCG (9 s -> 4.5 s with the same command line). The
//! bzImage stays in the entry as `vmlinuz` ([`Appliance::bzimage`]) for
//! firmware that cannot boot ELF kernels (OVMF).

pub mod bzimage;
pub mod cpio;
pub mod elf;
pub mod kmod;
pub mod lz4;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::guest::agent;
use cpio::CpioWriter;
use kmod::{Chain, Compression, KmodError, ModuleIndex};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The layout of a cache entry; part of the hash, so bump it whenever the
/// builder writes something different from the same inputs.
const ENTRY_FORMAT: &str = "2 (vmlinuz, vmlinux, initrd.img, manifest.txt)";

/// Modules the appliance carries by default (with their dependencies):
/// the NIC drivers, KVM, and VFIO.
pub const DEFAULT_MODULES: &[&str] = &[
    "igb",
    "igbvf",
    "e1000e",
    "virtio_net",
    "kvm",
    "kvm_intel",
    "kvm_amd",
    "vfio",
    "vfio_pci",
    "vfio_iommu_type1",
];

/// Host programs the appliance carries, with their shared libraries.
const PROGRAMS: &[(&str, &str)] = &[("lspci", "pciutils"), ("numactl", "numactl")];

/// The QEMU the nested flavour carries, and its Debian package.
const NESTED_QEMU: (&str, &str) = ("qemu-system-x86_64", "qemu-system-x86");

/// Firmware the nested guest's QEMU loads (`-M pc -nodefaults`, direct
/// kernel boot, KVM): SeaBIOS, the option ROM that boots a bzImage through
/// fw_cfg DMA (`pvh.bin` for an ELF kernel), and the TPR-patching ROM QEMU
/// adds under KVM. Seen with `strace -e openat` on QEMU 10.0.
const NESTED_FIRMWARE: &[&str] = &[
    "bios-256k.bin",
    "linuxboot_dma.bin",
    "pvh.bin",
    "kvmvapic.bin",
];

/// Where QEMU's firmware is looked for on the host (Debian splits it
/// between qemu-system-data, seabios and ipxe-qemu).
const FIRMWARE_DIRS: &[&str] = &[
    "/usr/share/qemu",
    "/usr/share/seabios",
    "/usr/lib/ipxe/qemu",
];

/// The busybox applets the nested guest's `/init` uses.
const NESTED_APPLETS: &[&str] = &["sh", "mkdir", "mount", "dmesg", "echo", "poweroff", "cat"];

/// Where host programs are looked for.
const BIN_DIRS: &[&str] = &["/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// Where shared libraries are looked for (after `DT_RUNPATH`), in the
/// order of the glibc loader's built-in path on Debian x86-64.
const LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// Where the PCI id database may be; it goes to the same place in the
/// appliance, where the host's libpci looks for it.
const PCI_IDS: &[&str] = &[
    "/usr/share/misc/pci.ids",
    "/usr/share/hwdata/pci.ids",
    "/usr/share/misc/pci.ids.gz",
    "/usr/share/hwdata/pci.ids.gz",
];

/// The kernel command line the appliance is meant to boot with, before
/// `intel_iommu=on` and the `nestlab.*` parameters
/// ([`ProbeParams::to_cmdline`](crate::capture::ProbeParams::to_cmdline)).
///
/// - `console=ttyS0`: the probe talks on the first serial port.
/// - `panic=-1`: a panic reboots at once; with `on_reboot=destroy` (QEMU
///   `-no-reboot`) the guest then goes away instead of hanging forever.
/// - `quiet`: nothing but emergencies on the serial console before /init
///   (about 0.3 s less under TCG); the whole log is still captured as
///   `dmesg.txt`.
/// - `mitigations=off`, `nokaslr`, `cryptomgr.notests`, `8250.nr_uarts=1`:
///   skip work that only costs time in a throwaway guest (together about
///   0.2 s under TCG, within the noise one by one).
///
/// - `maxcpus=1`: the kernel boots on CPU 0 alone and /init brings every
///   other present CPU online after loading the modules, while the PCI
///   captures run. Loading kvm and kvm_amd took 2.8 s with the reference's
///   8 CPUs online under TCG and 0.35 s with one: kvm patches hundreds of
///   static calls, and each patch waits for every online CPU. numactl is
///   captured only once every CPU is online.
/// - `rcupdate.rcu_expedited=1`: bringing a CPU online waits for RCU grace
///   periods; expedited, the 7 extra CPUs of the reference come online in
///   0.8 s instead of 1.2 s.
///
/// Under TCG [`boot_args_for_tcg`] adds `lpj=`.
///
/// Left out on purpose: `tsc=reliable` and `no_timer_check` (no measurable
/// gain; TCG vCPUs' TSCs are not synchronised, so telling the kernel they
/// are is wrong), `earlyprintk` (debugging only).
pub fn default_cmdline() -> &'static str {
    "console=ttyS0 panic=-1 quiet mitigations=off nokaslr cryptomgr.notests 8250.nr_uarts=1 maxcpus=1 rcupdate.rcu_expedited=1"
}

/// Extra kernel arguments for a guest under TCG: `lpj=` (loops per jiffy)
/// from the host's TSC frequency and the guest kernel's `CONFIG_HZ`, when
/// both are known.
///
/// Under TCG the guest's TSC is the host's, and the boot CPU derives its
/// `lpj` from the TSC, but every other CPU measures it again with timer
/// interrupts (about 60 ms each under TCG, and the kernel often gives up:
/// "failed to get a good estimate for loops_per_jiffy ... Consider using
/// lpj="). `udelay` counts TSC cycles scaled by `lpj`, so the value the
/// boot CPU would compute is the right one for all of them.
pub fn boot_args_for_tcg(cpuinfo: &str, kernel_config: Option<&str>) -> Option<String> {
    let hz: u64 = kernel_config?
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))?
        .trim()
        .parse()
        .ok()
        .filter(|hz| *hz > 0)?;
    let mhz: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()
        .filter(|m: &f64| m.is_finite() && *m >= 100.0 && *m <= 100_000.0)?;
    let lpj = (mhz * 1e6 / hz as f64).round() as u64;
    Some(format!("lpj={lpj}"))
}

/// The guest kernel's build configuration, `config-<version>` beside its
/// image (where Debian's packages put it), when readable.
pub fn kernel_config(kernel: &GuestKernel) -> Option<String> {
    let dir = kernel.vmlinuz.parent()?;
    fs::read_to_string(dir.join(format!("config-{}", kernel.version))).ok()
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplianceSpec {
    /// A kernel image to use (`--kernel`), ahead of every other source.
    pub kernel: Option<PathBuf>,
    /// Its modules directory (`--modules`, `/lib/modules/<version>`);
    /// derived from the kernel when not given.
    pub modules_dir: Option<PathBuf>,
    /// The cache directory; [`cache_dir`] when not given.
    pub cache_dir: Option<PathBuf>,
    /// Modules to carry (each with its dependencies); missing ones are
    /// left out and listed in [`Appliance::missing_modules`].
    pub modules: Vec<String>,
    /// Build the nested flavour too ([`Appliance::nested`]); when it cannot
    /// be built, [`Appliance::nested_unavailable`] says why and the base
    /// appliance is still returned.
    pub nested: bool,
}

impl Default for ApplianceSpec {
    fn default() -> Self {
        ApplianceSpec {
            kernel: None,
            modules_dir: None,
            cache_dir: None,
            modules: DEFAULT_MODULES.iter().map(|m| m.to_string()).collect(),
            nested: true,
        }
    }
}

/// Where the kernel came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelOrigin {
    /// [`ApplianceSpec::kernel`] (`--kernel`).
    Explicit,
    /// `$NESTLAB_KERNEL`.
    Env,
    /// The host's own `/boot/vmlinuz-$(uname -r)`.
    Host,
    /// The kernel `./dev setup` fetched into `<cache>/kernel`.
    Cache,
}

impl fmt::Display for KernelOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KernelOrigin::Explicit => "--kernel",
            KernelOrigin::Env => "$NESTLAB_KERNEL",
            KernelOrigin::Host => "the host's /boot",
            KernelOrigin::Cache => "the nestlab cache",
        })
    }
}

/// A guest kernel and its modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestKernel {
    /// The kernel image.
    pub vmlinuz: PathBuf,
    /// Its modules directory (`.../lib/modules/<version>`).
    pub modules_dir: PathBuf,
    /// Kernel release (`6.1.0-56-amd64`).
    pub version: String,
    /// Where it was found.
    pub origin: KernelOrigin,
}

/// A built (or cached) appliance, ready for direct kernel boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appliance {
    /// The kernel to boot (`<os><kernel>`, QEMU `-kernel`): the PVH ELF
    /// `vmlinux` when it could be extracted, else the bzImage.
    pub kernel: PathBuf,
    /// The bzImage as given, copied into the cache entry (`vmlinuz`).
    pub bzimage: PathBuf,
    /// Why [`kernel`](Self::kernel) is the bzImage and not a PVH vmlinux
    /// (None when it is the vmlinux).
    pub pvh_unavailable: Option<String>,
    /// The initramfs (uncompressed newc cpio).
    pub initrd: PathBuf,
    /// Kernel release.
    pub kernel_version: String,
    /// Module names `nestlab.modules=` may name: the requested ones that
    /// exist (built in or as files) and their dependencies, sorted.
    pub modules: Vec<String>,
    /// Requested modules this kernel does not have.
    pub missing_modules: Vec<String>,
    /// sha256 (hex) over everything that went in; the cache entry's name.
    pub hash: String,
    /// Whether the entry was already there.
    pub cached: bool,
    /// The cache entry (`<cache>/appliance/<hash>`).
    pub dir: PathBuf,
    /// The kernel it was built from.
    pub source: GuestKernel,
    /// Size of the initramfs in bytes.
    pub initrd_size: u64,
    /// The nested flavour: the same kernel with a bigger initramfs that
    /// can also start a nested guest (for profiles with `[nested]`).
    pub nested: Option<NestedFlavour>,
    /// Why there is no nested flavour (not asked for, or what it lacks).
    pub nested_unavailable: Option<String>,
}

/// The nested flavour of the appliance: an initramfs holding everything of
/// the base one plus `qemu-system-x86_64` with its shared libraries, the
/// firmware it loads, and the nested guest's kernel and tiny initramfs
/// (busybox, lspci, pci.ids, [`agent::nested_init_script`]). It boots with
/// the base appliance's kernel. Cached in its own entry
/// (`<cache>/appliance/<hash>/{initrd.img,manifest.txt}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedFlavour {
    /// The initramfs (uncompressed newc cpio).
    pub initrd: PathBuf,
    /// Its size in bytes.
    pub initrd_size: u64,
    /// Size of the nested guest's own initramfs inside it, in bytes.
    pub nested_initrd_size: u64,
    /// What the nested guest boots (`bzImage, N bytes`).
    pub nested_kernel: String,
    /// sha256 (hex) over everything that went in; the entry's name.
    pub hash: String,
    /// Whether the entry was already there.
    pub cached: bool,
    /// The cache entry.
    pub dir: PathBuf,
}

impl Appliance {
    /// The initramfs to boot a topology with: the nested flavour's when
    /// `nested` (the profile assigns devices to a nested guest), unless the
    /// initramfs was replaced (`--initrd`: [`initrd`](Self::initrd) is no
    /// longer this entry's), in which case the replacement is booted as is.
    ///
    /// # Errors
    /// Why there is no nested flavour, when one is needed.
    pub fn initrd_for(&self, nested: bool) -> Result<&Path, String> {
        let replaced = !self.initrd.starts_with(&self.dir);
        if !nested || replaced {
            return Ok(&self.initrd);
        }
        match &self.nested {
            Some(n) => Ok(&n.initrd),
            None => Err(format!(
                "the profile assigns devices to a nested guest, but the appliance has no nested flavour: {}",
                self.nested_unavailable
                    .as_deref()
                    .unwrap_or("it was not built")
            )),
        }
    }
}

/// Why an appliance could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ApplianceError {
    /// No kernel anywhere.
    #[error("no guest kernel found (tried {}); run ./dev setup (it fetches a Debian kernel into {cache}/kernel), or pass --kernel PATH or set NESTLAB_KERNEL", tried.join(", "))]
    NoKernel {
        /// What was tried, in order.
        tried: Vec<String>,
        /// The cache directory.
        cache: PathBuf,
    },
    /// A kernel that was asked for but is not there.
    #[error("kernel {path} (from {origin}) does not exist or is not readable")]
    KernelMissing {
        /// The kernel image.
        path: PathBuf,
        /// Who asked for it.
        origin: KernelOrigin,
    },
    /// A kernel whose version its file name does not tell.
    #[error("cannot tell the kernel version of {0} from its name (expected vmlinuz-<version>); pass --modules /lib/modules/<version>")]
    NoKernelVersion(PathBuf),
    /// The modules directory of a kernel is missing.
    #[error("modules directory {path} of kernel {kernel} does not exist; pass --modules DIR (or set NESTLAB_MODULES)")]
    ModulesDirMissing {
        /// The directory looked for.
        path: PathBuf,
        /// The kernel.
        kernel: PathBuf,
    },
    /// No cache directory can be chosen.
    #[error("cannot choose a cache directory: set NESTLAB_CACHE_DIR (neither XDG_CACHE_HOME nor HOME is set)")]
    NoCacheDir,
    /// A host program the appliance carries is missing.
    #[error("{tool} not found in {}; install {package} (./dev setup does)", BIN_DIRS.join(", "))]
    ToolMissing {
        /// The program.
        tool: String,
        /// The Debian package that has it.
        package: String,
    },
    /// A shared library a program needs is missing.
    #[error("{library}, needed by {needed_by}, is in none of {}", searched.join(", "))]
    LibraryMissing {
        /// The soname.
        library: String,
        /// The program or library that needs it.
        needed_by: PathBuf,
        /// The directories searched.
        searched: Vec<String>,
    },
    /// A program or library that cannot be read as ELF.
    #[error("cannot read the ELF headers of {path}")]
    Elf {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: elf::ElfError,
    },
    /// The kernel's modules could not be resolved.
    #[error("cannot resolve the modules of kernel {version}")]
    Modules {
        /// Kernel release.
        version: String,
        /// The cause.
        #[source]
        source: KmodError,
    },
    /// A compressed module could not be decompressed.
    #[error("cannot decompress {path} with `{tool} -dc`: {detail}")]
    Decompress {
        /// The module file.
        path: PathBuf,
        /// The program used.
        tool: String,
        /// What went wrong.
        detail: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A firmware file the nested guest's QEMU loads is missing.
    #[error("QEMU firmware {file} is in none of {}; install qemu-system-data and seabios (./dev setup does)", FIRMWARE_DIRS.join(", "))]
    FirmwareMissing {
        /// The file name.
        file: String,
    },
    /// A file or directory could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> ApplianceError {
    let path = path.to_path_buf();
    move |source| ApplianceError::Read { path, source }
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> ApplianceError {
    let path = path.to_path_buf();
    move |source| ApplianceError::Write { path, source }
}

/// What the host environment says, captured once (and made up in tests).
#[derive(Debug, Clone, Default)]
struct HostEnv {
    kernel: Option<PathBuf>,
    modules: Option<PathBuf>,
    cache: Option<PathBuf>,
    xdg_cache: Option<PathBuf>,
    home: Option<PathBuf>,
    root: bool,
    /// `uname -r`.
    release: Option<String>,
    boot_dir: PathBuf,
    lib_modules: PathBuf,
}

impl HostEnv {
    fn current() -> HostEnv {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let euid = fs::read_to_string("/proc/self/status").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1))
                .and_then(|id| id.parse::<u32>().ok())
        });
        HostEnv {
            kernel: var("NESTLAB_KERNEL"),
            modules: var("NESTLAB_MODULES"),
            cache: var("NESTLAB_CACHE_DIR"),
            xdg_cache: var("XDG_CACHE_HOME").filter(|p| p.is_absolute()),
            home: var("HOME"),
            root: euid == Some(0),
            release: fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string()),
            boot_dir: PathBuf::from("/boot"),
            lib_modules: PathBuf::from("/lib/modules"),
        }
    }

    fn cache_dir(&self) -> Result<PathBuf, ApplianceError> {
        if let Some(c) = &self.cache {
            Ok(c.clone())
        } else if self.root {
            Ok(PathBuf::from("/var/cache/nestlab"))
        } else if let Some(x) = &self.xdg_cache {
            Ok(x.join("nestlab"))
        } else if let Some(h) = &self.home {
            Ok(h.join(".cache").join("nestlab"))
        } else {
            Err(ApplianceError::NoCacheDir)
        }
    }
}

/// The cache directory: `$NESTLAB_CACHE_DIR`, else `/var/cache/nestlab`
/// for root, else `$XDG_CACHE_HOME/nestlab`, else `~/.cache/nestlab`.
///
/// # Errors
/// [`ApplianceError::NoCacheDir`] when none of these can be told.
pub fn cache_dir() -> Result<PathBuf, ApplianceError> {
    HostEnv::current().cache_dir()
}

fn readable(path: &Path) -> bool {
    fs::File::open(path).is_ok_and(|f| f.metadata().is_ok_and(|m| m.is_file()))
}

fn version_from_name(vmlinuz: &Path) -> Option<String> {
    let name = vmlinuz.file_name()?.to_str()?;
    let v = name
        .strip_prefix("vmlinuz-")
        .or_else(|| name.strip_prefix("vmlinux-"))?;
    (!v.is_empty()).then(|| v.to_string())
}

/// Orders kernel releases: digit runs as numbers, the rest as text.
fn version_key(v: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            key.push((rest[..digits].parse().unwrap_or(u64::MAX), String::new()));
            rest = &rest[digits..];
        } else {
            let text = rest.len() - rest.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
            key.push((0, rest[..text].to_string()));
            rest = &rest[text..];
        }
    }
    key
}

/// A kernel given by path: its modules directory is `modules` if given,
/// else `<kernel dir>/../lib/modules/<version>` (a `dpkg -x` tree), else
/// `/lib/modules/<version>`.
fn kernel_at(
    vmlinuz: &Path,
    modules: Option<&Path>,
    origin: KernelOrigin,
    env: &HostEnv,
) -> Result<GuestKernel, ApplianceError> {
    if !readable(vmlinuz) {
        return Err(ApplianceError::KernelMissing {
            path: vmlinuz.to_path_buf(),
            origin,
        });
    }
    let modules_dir = match modules {
        Some(m) => m.to_path_buf(),
        None => {
            let version = version_from_name(vmlinuz)
                .ok_or_else(|| ApplianceError::NoKernelVersion(vmlinuz.to_path_buf()))?;
            let beside = vmlinuz
                .parent()
                .and_then(Path::parent)
                .map(|root| root.join("lib/modules").join(&version));
            let candidates: Vec<PathBuf> = beside
                .into_iter()
                .chain([env.lib_modules.join(&version)])
                .collect();
            candidates
                .iter()
                .find(|c| c.is_dir())
                .cloned()
                .ok_or_else(|| ApplianceError::ModulesDirMissing {
                    path: candidates[0].clone(),
                    kernel: vmlinuz.to_path_buf(),
                })?
        }
    };
    if !modules_dir.is_dir() {
        return Err(ApplianceError::ModulesDirMissing {
            path: modules_dir,
            kernel: vmlinuz.to_path_buf(),
        });
    }
    let version = modules_dir
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .or_else(|| version_from_name(vmlinuz))
        .ok_or_else(|| ApplianceError::NoKernelVersion(vmlinuz.to_path_buf()))?;
    Ok(GuestKernel {
        vmlinuz: vmlinuz.to_path_buf(),
        modules_dir,
        version,
        origin,
    })
}

fn locate(
    spec: &ApplianceSpec,
    env: &HostEnv,
    cache: &Path,
) -> Result<GuestKernel, ApplianceError> {
    let modules = spec.modules_dir.as_deref();
    if let Some(k) = &spec.kernel {
        return kernel_at(k, modules, KernelOrigin::Explicit, env);
    }
    if let Some(k) = &env.kernel {
        return kernel_at(
            k,
            modules.or(env.modules.as_deref()),
            KernelOrigin::Env,
            env,
        );
    }
    let mut tried = Vec::new();
    match &env.release {
        Some(release) => {
            let vmlinuz = env.boot_dir.join(format!("vmlinuz-{release}"));
            let moddir = modules
                .map(Path::to_path_buf)
                .unwrap_or_else(|| env.lib_modules.join(release));
            if readable(&vmlinuz) && moddir.is_dir() {
                return kernel_at(&vmlinuz, Some(&moddir), KernelOrigin::Host, env);
            }
            tried.push(format!("{} with {}", vmlinuz.display(), moddir.display()));
        }
        None => tried.push("the host kernel (uname -r unknown)".to_string()),
    }
    let boot = cache.join("kernel/boot");
    let newest = fs::read_dir(&boot)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .filter_map(|p| version_from_name(&p).map(|v| (p, v)))
        .max_by_key(|(_, v)| version_key(v));
    if let Some((vmlinuz, version)) = newest {
        let moddir = modules
            .map(Path::to_path_buf)
            .unwrap_or_else(|| cache.join("kernel/lib/modules").join(&version));
        return kernel_at(&vmlinuz, Some(&moddir), KernelOrigin::Cache, env);
    }
    tried.push(format!("{}/vmlinuz-*", boot.display()));
    Err(ApplianceError::NoKernel {
        tried,
        cache: cache.to_path_buf(),
    })
}

/// Finds the kernel an appliance would be built from, in this order:
/// [`ApplianceSpec::kernel`]; `$NESTLAB_KERNEL` (modules from
/// `$NESTLAB_MODULES`); the host's `/boot/vmlinuz-$(uname -r)` with
/// `/lib/modules/$(uname -r)` when readable; the newest
/// `<cache>/kernel/boot/vmlinuz-*` with `<cache>/kernel/lib/modules/<version>`.
/// [`ApplianceSpec::modules_dir`] overrides the modules directory of each.
///
/// # Errors
/// [`ApplianceError::KernelMissing`] when an explicit or `$NESTLAB_KERNEL`
/// kernel is not there, [`ApplianceError::ModulesDirMissing`],
/// [`ApplianceError::NoKernel`] when there is none at all.
pub fn locate_kernel(spec: &ApplianceSpec) -> Result<GuestKernel, ApplianceError> {
    let env = HostEnv::current();
    let cache = match &spec.cache_dir {
        Some(c) => c.clone(),
        None => env.cache_dir()?,
    };
    locate(spec, &env, &cache)
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
enum Source {
    Host(PathBuf),
    Bytes(Vec<u8>),
    /// A `.zst` module, decompressed with the host's `zstd` (busybox
    /// insmod reads xz and gzip modules itself, not zstd ones).
    Unzstd(PathBuf),
}

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File { perm: u32, source: Source },
    Symlink(String),
    CharDev { perm: u32, major: u32, minor: u32 },
}

/// The initramfs, path by path (absolute paths; parents sort first).
#[derive(Debug, Default, Clone)]
struct Plan {
    entries: BTreeMap<String, Node>,
}

impl Plan {
    /// Adds an entry and any missing parent directories; the first entry
    /// for a path wins.
    fn add(&mut self, path: &str, node: Node) {
        let mut at = 0;
        while let Some(i) = path[at + 1..].find('/') {
            at += i + 1;
            self.entries
                .entry(path[..at].to_string())
                .or_insert(Node::Dir);
        }
        self.entries.entry(path.to_string()).or_insert(node);
    }

    fn has(&self, path: &str) -> bool {
        self.entries.contains_key(path)
    }

    /// Adds an entry, replacing one at the same path.
    fn set(&mut self, path: &str, node: Node) {
        self.entries.remove(path);
        self.add(path, node);
    }
}

fn find_program(name: &str, package: &str) -> Result<PathBuf, ApplianceError> {
    BIN_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| ApplianceError::ToolMissing {
            tool: name.to_string(),
            package: package.to_string(),
        })
}

/// Adds a program's loader and shared libraries (transitively), each at
/// the path where the host has it; a file the plan has under another name
/// already becomes a symlink. Records the library directories used.
fn add_libraries(
    plan: &mut Plan,
    program: &Path,
    by_real_path: &mut BTreeMap<PathBuf, String>,
    lib_dirs: &mut BTreeSet<String>,
) -> Result<(), ApplianceError> {
    let mut queue = vec![program.to_path_buf()];
    let mut done = BTreeSet::new();
    while let Some(file) = queue.pop() {
        if !done.insert(file.clone()) {
            continue;
        }
        let bytes = fs::read(&file).map_err(read_err(&file))?;
        let dynamic = elf::dynamic(&bytes).map_err(|source| ApplianceError::Elf {
            path: file.clone(),
            source,
        })?;
        let mut wanted = Vec::new();
        if let Some(interp) = dynamic.interp {
            wanted.push((interp.clone(), PathBuf::from(&interp)));
        }
        let origin = file
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut searched: Vec<String> = dynamic
            .runpath
            .iter()
            .map(|r| r.replace("$ORIGIN", &origin).replace("${ORIGIN}", &origin))
            .collect();
        searched.extend(LIB_DIRS.iter().map(|d| d.to_string()));
        for soname in dynamic.needed {
            let found = searched
                .iter()
                .map(|d| Path::new(d).join(&soname))
                .find(|p| p.is_file())
                .ok_or_else(|| ApplianceError::LibraryMissing {
                    library: soname.clone(),
                    needed_by: file.clone(),
                    searched: searched.clone(),
                })?;
            if let Some(dir) = found.parent().and_then(Path::to_str) {
                lib_dirs.insert(dir.to_string());
            }
            wanted.push((found.to_string_lossy().into_owned(), found));
        }
        for (archive_path, host_path) in wanted {
            if plan.has(&archive_path) {
                continue;
            }
            let real = fs::canonicalize(&host_path).map_err(read_err(&host_path))?;
            match by_real_path.get(&real) {
                Some(first) => plan.add(&archive_path, Node::Symlink(first.clone())),
                None => {
                    by_real_path.insert(real, archive_path.clone());
                    plan.add(
                        &archive_path,
                        Node::File {
                            perm: 0o755,
                            source: Source::Host(host_path.clone()),
                        },
                    );
                    queue.push(host_path);
                }
            }
        }
    }
    Ok(())
}

/// What the plan holds besides the files: module names, and what
/// [`add_libraries`] needs to extend it.
struct Contents {
    plan: Plan,
    modules: Vec<String>,
    missing_modules: Vec<String>,
    by_real_path: BTreeMap<PathBuf, String>,
    lib_dirs: BTreeSet<String>,
}

/// The directories and device nodes every initramfs needs.
fn skeleton(plan: &mut Plan) {
    for d in [
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
        "/root",
        "/run",
        "/etc/nestlab",
    ] {
        plan.add(d, Node::Dir);
    }
    plan.add(
        "/dev/console",
        Node::CharDev {
            perm: 0o600,
            major: 5,
            minor: 1,
        },
    );
    plan.add(
        "/dev/null",
        Node::CharDev {
            perm: 0o666,
            major: 1,
            minor: 3,
        },
    );
}

/// Adds `/bin/busybox` (with its libraries, if it has any) and a symlink
/// to it per applet.
fn add_busybox(
    plan: &mut Plan,
    applets: &[&str],
    by_real_path: &mut BTreeMap<PathBuf, String>,
    lib_dirs: &mut BTreeSet<String>,
) -> Result<(), ApplianceError> {
    let busybox = find_program("busybox", "busybox-static")?;
    plan.add(
        "/bin/busybox",
        Node::File {
            perm: 0o755,
            source: Source::Host(busybox.clone()),
        },
    );
    add_libraries(plan, &busybox, by_real_path, lib_dirs)?;
    for applet in applets {
        plan.add(
            &format!("/bin/{applet}"),
            Node::Symlink("busybox".to_string()),
        );
    }
    Ok(())
}

/// Adds a host program as `/usr/bin/<name>` with its libraries.
fn add_program(
    plan: &mut Plan,
    name: &str,
    package: &str,
    by_real_path: &mut BTreeMap<PathBuf, String>,
    lib_dirs: &mut BTreeSet<String>,
) -> Result<(), ApplianceError> {
    let path = find_program(name, package)?;
    plan.add(
        &format!("/usr/bin/{name}"),
        Node::File {
            perm: 0o755,
            source: Source::Host(path.clone()),
        },
    );
    add_libraries(plan, &path, by_real_path, lib_dirs)
}

/// Adds the PCI id database, when the host has one.
fn add_pci_ids(plan: &mut Plan) {
    if let Some(ids) = PCI_IDS.iter().find(|p| Path::new(p).is_file()) {
        plan.add(
            ids,
            Node::File {
                perm: 0o644,
                source: Source::Host(PathBuf::from(ids)),
            },
        );
    }
}

/// [`agent::ENV_FILE`]: `LD_LIBRARY_PATH` over the library directories used.
fn env_file(lib_dirs: &BTreeSet<String>) -> Node {
    let ld_path: Vec<&str> = LIB_DIRS
        .iter()
        .copied()
        .filter(|d| lib_dirs.contains(*d))
        .collect();
    let env = format!(
        "LD_LIBRARY_PATH={}\nexport LD_LIBRARY_PATH\n",
        ld_path.join(":")
    );
    Node::File {
        perm: 0o644,
        source: Source::Bytes(env.into_bytes()),
    }
}

fn plan(kernel: &GuestKernel, spec: &ApplianceSpec) -> Result<Contents, ApplianceError> {
    let mut plan = Plan::default();
    skeleton(&mut plan);
    let mut by_real_path = BTreeMap::new();
    let mut lib_dirs = BTreeSet::new();
    add_busybox(
        &mut plan,
        agent::BUSYBOX_APPLETS,
        &mut by_real_path,
        &mut lib_dirs,
    )?;
    for (name, package) in PROGRAMS {
        add_program(&mut plan, name, package, &mut by_real_path, &mut lib_dirs)?;
    }
    add_pci_ids(&mut plan);

    let mod_err = |source| ApplianceError::Modules {
        version: kernel.version.clone(),
        source,
    };
    let index = ModuleIndex::load(&kernel.modules_dir).map_err(mod_err)?;
    let mut chains = String::new();
    let mut available = BTreeSet::new();
    let mut missing = Vec::new();
    let mut requested = BTreeSet::new();
    for m in &spec.modules {
        let name = kmod::normalize(m);
        if !requested.insert(name.clone()) {
            continue;
        }
        match index.chain(&name).map_err(mod_err)? {
            None => missing.push(name),
            Some(Chain::Builtin) => {
                chains.push_str(&format!("{name}\n"));
                available.insert(name);
            }
            Some(Chain::Files(files)) => {
                chains.push_str(&name);
                for f in files {
                    let host = kernel.modules_dir.join(&f.rel_path);
                    let mut rel = f.rel_path.to_string_lossy().into_owned();
                    let source = if f.compression == Compression::Zstd {
                        rel.truncate(rel.len() - ".zst".len());
                        Source::Unzstd(host)
                    } else {
                        Source::Host(host)
                    };
                    let archive_path = format!("/lib/modules/{}/{rel}", kernel.version);
                    chains.push_str(&format!(" {}={archive_path}", f.name));
                    plan.add(
                        &archive_path,
                        Node::File {
                            perm: 0o644,
                            source,
                        },
                    );
                    available.insert(f.name);
                }
                chains.push('\n');
            }
        }
    }
    plan.add(
        agent::MODULES_FILE,
        Node::File {
            perm: 0o644,
            source: Source::Bytes(chains.into_bytes()),
        },
    );
    plan.add(agent::ENV_FILE, env_file(&lib_dirs));
    plan.add(
        agent::CAPTURE_SCRIPT_PATH,
        Node::File {
            perm: 0o755,
            source: Source::Bytes(agent::capture_script().into_bytes()),
        },
    );
    plan.add(
        "/init",
        Node::File {
            perm: 0o755,
            source: Source::Bytes(agent::init_script().into_bytes()),
        },
    );
    Ok(Contents {
        plan,
        modules: available.into_iter().collect(),
        missing_modules: missing,
        by_real_path,
        lib_dirs,
    })
}

/// The nested guest's initramfs: busybox, lspci with its libraries,
/// pci.ids, [`agent::nested_init_script`] as `/init`.
fn nested_guest_initrd() -> Result<Vec<u8>, ApplianceError> {
    let mut plan = Plan::default();
    skeleton(&mut plan);
    let mut by_real_path = BTreeMap::new();
    let mut lib_dirs = BTreeSet::new();
    add_busybox(&mut plan, NESTED_APPLETS, &mut by_real_path, &mut lib_dirs)?;
    add_program(
        &mut plan,
        "lspci",
        "pciutils",
        &mut by_real_path,
        &mut lib_dirs,
    )?;
    add_pci_ids(&mut plan);
    plan.add(agent::ENV_FILE, env_file(&lib_dirs));
    plan.add(
        "/init",
        Node::File {
            perm: 0o755,
            source: Source::Bytes(agent::nested_init_script().into_bytes()),
        },
    );
    let (bytes, _) = write_cpio(&plan, Vec::new(), Path::new("<nested initramfs>"))?;
    Ok(bytes)
}

fn find_firmware(name: &str) -> Result<PathBuf, ApplianceError> {
    FIRMWARE_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| ApplianceError::FirmwareMissing {
            file: name.to_string(),
        })
}

/// What the nested flavour adds to the base plan: QEMU, the libraries the
/// base plan lacks, the firmware, and the nested guest's kernel (the
/// bzImage: a PVH vmlinux, even with its zero tails trimmed, is 41 MB
/// against 8 MB and saved only 1.3 s of a 10 s nested run) and initramfs.
/// Returns the added entries (with their parent directories), the nested
/// initramfs's size and what the nested guest boots.
fn plan_nested(
    kernel: &GuestKernel,
    base: &Contents,
) -> Result<(Plan, u64, String), ApplianceError> {
    let mut plan = base.plan.clone();
    let mut by_real_path = base.by_real_path.clone();
    let mut lib_dirs = base.lib_dirs.clone();
    let (qemu, package) = NESTED_QEMU;
    add_program(&mut plan, qemu, package, &mut by_real_path, &mut lib_dirs)?;
    for name in NESTED_FIRMWARE {
        let host = find_firmware(name)?;
        plan.add(
            &format!("{}/{name}", agent::NESTED_FIRMWARE_DIR),
            Node::File {
                perm: 0o644,
                source: Source::Host(host),
            },
        );
    }
    plan.add(
        agent::NESTED_KERNEL_PATH,
        Node::File {
            perm: 0o644,
            source: Source::Host(kernel.vmlinuz.clone()),
        },
    );
    let size = fs::metadata(&kernel.vmlinuz)
        .map_err(read_err(&kernel.vmlinuz))?
        .len();
    let initrd = nested_guest_initrd()?;
    let initrd_size = initrd.len() as u64;
    plan.add(
        agent::NESTED_INITRD_PATH,
        Node::File {
            perm: 0o644,
            source: Source::Bytes(initrd),
        },
    );
    plan.set(agent::ENV_FILE, env_file(&lib_dirs));
    let mut added = Plan::default();
    for (path, node) in plan.entries {
        let new = match (base.plan.entries.get(&path), &node) {
            (None, _) => true,
            // The environment file differs when QEMU's libraries live elsewhere.
            (Some(_), Node::File { .. }) => path == agent::ENV_FILE,
            (Some(_), _) => false,
        };
        if new {
            added.add(&path, node);
        }
    }
    Ok((added, initrd_size, format!("bzImage, {size} bytes")))
}

/// Feeds a length-prefixed field to the hash (so fields cannot run into
/// each other).
fn field(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u64).to_le_bytes());
    h.update(b);
}

/// A host file as hashed: real path, size, modification time. Reading the
/// metadata, not the bytes, keeps a cache hit instant; package upgrades
/// change size or mtime.
fn file_identity(h: &mut Sha256, path: &Path) -> Result<(), ApplianceError> {
    let real = fs::canonicalize(path).map_err(read_err(path))?;
    let meta = fs::metadata(&real).map_err(read_err(path))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    field(h, real.as_os_str().as_encoded_bytes());
    field(h, &meta.len().to_le_bytes());
    field(h, &mtime.as_nanos().to_le_bytes());
    Ok(())
}

fn hash(kernel: &GuestKernel, flavour: &str, plans: &[&Plan]) -> Result<String, ApplianceError> {
    let mut h = Sha256::new();
    field(&mut h, b"nestlab appliance");
    field(&mut h, flavour.as_bytes());
    field(&mut h, VERSION.as_bytes());
    field(&mut h, ENTRY_FORMAT.as_bytes());
    file_identity(&mut h, &kernel.vmlinuz)?;
    field(&mut h, kernel.version.as_bytes());
    for (path, node) in plans.iter().flat_map(|p| &p.entries) {
        field(&mut h, path.as_bytes());
        match node {
            Node::Dir => field(&mut h, b"dir"),
            Node::Symlink(target) => {
                field(&mut h, b"symlink");
                field(&mut h, target.as_bytes());
            }
            Node::CharDev { perm, major, minor } => {
                field(&mut h, b"chardev");
                field(&mut h, format!("{perm:o} {major} {minor}").as_bytes());
            }
            Node::File { perm, source } => {
                field(&mut h, format!("file {perm:o}").as_bytes());
                match source {
                    Source::Host(p) => {
                        field(&mut h, b"host");
                        file_identity(&mut h, p)?;
                    }
                    Source::Unzstd(p) => {
                        field(&mut h, b"unzstd");
                        file_identity(&mut h, p)?;
                    }
                    Source::Bytes(b) => {
                        field(&mut h, b"bytes");
                        field(&mut h, b);
                    }
                }
            }
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn load(source: &Source) -> Result<Vec<u8>, ApplianceError> {
    match source {
        Source::Host(p) => fs::read(p).map_err(read_err(p)),
        Source::Bytes(b) => Ok(b.clone()),
        Source::Unzstd(p) => {
            let fail = |detail: String| ApplianceError::Decompress {
                path: p.clone(),
                tool: "zstd".into(),
                detail,
            };
            let out = std::process::Command::new("zstd")
                .arg("-dcq")
                .arg("--")
                .arg(p)
                .output()
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        fail("zstd is not installed (apt-get install zstd)".into())
                    } else {
                        fail(e.to_string())
                    }
                })?;
            if !out.status.success() {
                return Err(fail(
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ));
            }
            Ok(out.stdout)
        }
    }
}

/// Writes the plan as a newc cpio archive to `w`; returns the writer and
/// the manifest text. `path` names the destination in errors.
fn write_cpio<W: Write>(plan: &Plan, w: W, path: &Path) -> Result<(W, String), ApplianceError> {
    let mut w = CpioWriter::new(w);
    let mut manifest = String::new();
    for (p, node) in &plan.entries {
        let result = match node {
            Node::Dir => {
                manifest.push_str(&format!("d 0755 {:>9} {p}\n", ""));
                w.dir(p, 0o755)
            }
            Node::Symlink(target) => {
                manifest.push_str(&format!("l 0777 {:>9} {p} -> {target}\n", ""));
                w.symlink(p, target)
            }
            Node::CharDev { perm, major, minor } => {
                manifest.push_str(&format!("c {perm:04o} {:>9} {p} ({major}:{minor})\n", ""));
                w.char_dev(p, *perm, *major, *minor)
            }
            Node::File { perm, source } => {
                let data = load(source)?;
                let from = match source {
                    Source::Host(h) => format!(" <- {}", h.display()),
                    Source::Unzstd(h) => format!(" <- zstd -dc {}", h.display()),
                    Source::Bytes(_) => String::new(),
                };
                manifest.push_str(&format!("f {perm:04o} {:>9} {p}{from}\n", data.len()));
                w.file(p, *perm, &data)
            }
        };
        result.map_err(write_err(path))?;
    }
    let w = w.finish().map_err(write_err(path))?;
    Ok((w, manifest))
}

/// Writes the initramfs; returns its size and the manifest text.
fn write_initrd(plan: &Plan, path: &Path) -> Result<(u64, String), ApplianceError> {
    let file = fs::File::create(path).map_err(write_err(path))?;
    let (buf, manifest) = write_cpio(plan, BufWriter::with_capacity(1 << 20, file), path)?;
    let file = buf.into_inner().map_err(|e| ApplianceError::Write {
        path: path.to_path_buf(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(write_err(path))?;
    let size = file.metadata().map_err(write_err(path))?.len();
    Ok((size, manifest))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ApplianceError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(write_err(path))
}

/// Creates `dir` and any missing parents, each 0755.
fn ensure_dir(dir: &Path) -> Result<(), ApplianceError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .collect();
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => set_mode(d, 0o755)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(ApplianceError::Write {
                    path: d.to_path_buf(),
                    source: e,
                })
            }
        }
    }
    Ok(())
}

/// Entries of the appliance cache unused for less than this are never
/// pruned: another nestlab (another version, another kernel) may be
/// booting one of them right now.
pub const PRUNE_MIN_AGE: Duration = Duration::from_secs(3600);

/// One cache entry [`prune`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// The entry's directory.
    pub dir: PathBuf,
    /// Bytes it took.
    pub bytes: u64,
}

fn tree_bytes(p: &Path) -> u64 {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| tree_bytes(&e.path()))
                    .sum()
            })
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Removes the appliance cache entries (`<cache>/appliance/<hash>`) other
/// than `keep` whose last use is older than `min_age` (an entry's mtime
/// is set each time a run finds it in the cache). Each nestlab version and
/// each kernel makes new entries of about 20 to 90 MB, which nothing else
/// removes.
///
/// # Errors
/// [`ApplianceError::Write`] when an old entry cannot be removed; the ones
/// removed before stay removed.
pub fn prune(
    cache: &Path,
    keep: &[&Path],
    min_age: Duration,
) -> Result<Vec<Pruned>, ApplianceError> {
    let appliances = cache.join("appliance");
    let Ok(rd) = fs::read_dir(&appliances) else {
        return Ok(Vec::new());
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    let mut removed = Vec::new();
    for e in entries {
        let dir = e.path();
        let name = e.file_name();
        // Temporary build directories are sweep_stale's.
        if name.to_string_lossy().starts_with('.') || keep.iter().any(|k| *k == dir) {
            continue;
        }
        let old = e
            .metadata()
            .ok()
            .filter(|m| m.is_dir())
            .and_then(|m| m.modified().ok())
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age >= min_age);
        if !old {
            continue;
        }
        let bytes = tree_bytes(&dir);
        fs::remove_dir_all(&dir).map_err(write_err(&dir))?;
        removed.push(Pruned { dir, bytes });
    }
    Ok(removed)
}

/// Removes temporary build directories older than an hour (left by a
/// crashed build); errors are ignored, they are only litter.
fn sweep_stale(appliances: &Path) {
    let Ok(rd) = fs::read_dir(appliances) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let stale = e.file_name().to_string_lossy().starts_with(".tmp-")
            && e.metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
        if stale {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Builds the probe appliance for `spec`, or finds it in the cache.
///
/// # Errors
/// [`ApplianceError`] naming the kernel, module, program, library or path
/// at fault, and what to do about it.
pub fn build(spec: &ApplianceSpec) -> Result<Appliance, ApplianceError> {
    let env = HostEnv::current();
    let cache = match &spec.cache_dir {
        Some(c) => c.clone(),
        None => env.cache_dir()?,
    };
    let kernel = locate(spec, &env, &cache)?;
    build_with(spec, kernel, &cache)
}

fn build_with(
    spec: &ApplianceSpec,
    kernel: GuestKernel,
    cache: &Path,
) -> Result<Appliance, ApplianceError> {
    let contents = plan(&kernel, spec)?;
    let hash = hash(&kernel, "base", &[&contents.plan])?;
    let appliances = cache.join("appliance");
    let dir = appliances.join(&hash);
    let initrd = dir.join("initrd.img");
    let vmlinuz = dir.join("vmlinuz");
    let vmlinux = dir.join("vmlinux");
    let complete = |d: &Path| d.join("initrd.img").is_file() && d.join("vmlinuz").is_file();
    let cached = materialize(&appliances, &hash, &complete, |tmp| {
        fill(tmp, &contents.plan, &kernel)
    })?;
    let mut appliance = Appliance {
        kernel: vmlinux.clone(),
        bzimage: vmlinuz.clone(),
        pvh_unavailable: None,
        initrd: initrd.clone(),
        kernel_version: kernel.version.clone(),
        modules: contents.modules.clone(),
        missing_modules: contents.missing_modules.clone(),
        hash: hash.clone(),
        cached,
        dir: dir.clone(),
        source: kernel,
        initrd_size: 0,
        nested: None,
        nested_unavailable: Some("not asked for".to_string()),
    };
    appliance.initrd_size = fs::metadata(&initrd).map_err(read_err(&initrd))?.len();
    if !vmlinux.is_file() {
        appliance.kernel = vmlinuz;
        let manifest = fs::read_to_string(dir.join("manifest.txt")).unwrap_or_default();
        let why = manifest
            .lines()
            .find_map(|l| l.strip_prefix("# boot vmlinuz (bzImage); "));
        appliance.pvh_unavailable = Some(why.map_or_else(
            || format!("no vmlinux in {}", dir.display()),
            str::to_string,
        ));
    }
    if spec.nested {
        match build_nested(&appliance.source, &contents, &appliances) {
            Ok(n) => {
                appliance.nested = Some(n);
                appliance.nested_unavailable = None;
            }
            Err(e) => {
                let mut why = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    why.push_str(&format!(": {s}"));
                    src = s.source();
                }
                appliance.nested_unavailable = Some(why);
            }
        }
    }
    Ok(appliance)
}

/// Builds (or finds) the nested flavour next to the base entry.
fn build_nested(
    kernel: &GuestKernel,
    base: &Contents,
    appliances: &Path,
) -> Result<NestedFlavour, ApplianceError> {
    let (added, nested_initrd_size, nested_kernel) = plan_nested(kernel, base)?;
    let hash = hash(kernel, "nested", &[&base.plan, &added])?;
    let dir = appliances.join(&hash);
    let initrd = dir.join("initrd.img");
    let complete = |d: &Path| d.join("initrd.img").is_file() && d.join("manifest.txt").is_file();
    let cached = materialize(appliances, &hash, &complete, |tmp| {
        fs::create_dir(tmp).map_err(write_err(tmp))?;
        set_mode(tmp, 0o755)?;
        let path = tmp.join("initrd.img");
        let (base_size, base_manifest) = write_initrd(&base.plan, &path)?;
        let (extra, extra_manifest) = write_cpio(&added, Vec::new(), &path)?;
        let packed = lz4::compress_legacy(&extra);
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(write_err(&path))?;
        f.write_all(&packed)
            .and_then(|()| f.sync_all())
            .map_err(write_err(&path))?;
        set_mode(&path, 0o644)?;
        let size = base_size + packed.len() as u64;
        let header = format!(
            "# nestlab {VERSION} probe appliance, nested flavour\n# boots with the kernel {} ({}, from {})\n# nested guest: {nested_kernel}, initramfs {nested_initrd_size} bytes\n# initrd {size} bytes: the base appliance's uncompressed newc cpio ({base_size} bytes), then the nested step's files as an LZ4 (legacy) compressed cpio ({} bytes, {} uncompressed)\n",
            kernel.version,
            kernel.vmlinuz.display(),
            kernel.origin,
            packed.len(),
            extra.len(),
        );
        let manifest = format!("{base_manifest}# nested step, LZ4 compressed:\n{extra_manifest}");
        write_file(
            &tmp.join("manifest.txt"),
            format!("{header}{manifest}").as_bytes(),
        )
    })?;
    let initrd_size = fs::metadata(&initrd).map_err(read_err(&initrd))?.len();
    Ok(NestedFlavour {
        initrd,
        initrd_size,
        nested_initrd_size,
        nested_kernel,
        hash,
        cached,
        dir,
    })
}

/// Makes sure the cache entry `<appliances>/<hash>` is `complete`, filling
/// a temporary directory with `fill` and renaming it into place when it is
/// not. Returns whether it was there already.
fn materialize(
    appliances: &Path,
    hash: &str,
    complete: &dyn Fn(&Path) -> bool,
    fill: impl FnOnce(&Path) -> Result<(), ApplianceError>,
) -> Result<bool, ApplianceError> {
    let dir = appliances.join(hash);
    if complete(&dir) {
        // The entry's mtime says when it was last used (see `prune`).
        let _ = fs::File::open(&dir).and_then(|f| f.set_modified(SystemTime::now()));
        return Ok(true);
    }
    ensure_dir(appliances)?;
    sweep_stale(appliances);
    let tmp = appliances.join(format!(
        ".tmp-{}-{}-{}",
        &hash[..16],
        std::process::id(),
        crate::guest::protocol::Nonce::generate()
    ));
    if let Err(e) = fill(&tmp) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, &dir) {
        let _ = fs::remove_dir_all(&tmp);
        // Another build of the same inputs got there first: use its entry.
        if !complete(&dir) {
            return Err(ApplianceError::Write {
                path: dir,
                source: e,
            });
        }
    }
    Ok(false)
}

/// Writes a complete entry into the (new) directory `tmp`.
fn fill(tmp: &Path, plan: &Plan, kernel: &GuestKernel) -> Result<(), ApplianceError> {
    fs::create_dir(tmp).map_err(write_err(tmp))?;
    set_mode(tmp, 0o755)?;
    let initrd = tmp.join("initrd.img");
    let (size, manifest) = write_initrd(plan, &initrd)?;
    set_mode(&initrd, 0o644)?;
    let image = fs::read(&kernel.vmlinuz).map_err(read_err(&kernel.vmlinuz))?;
    write_file(&tmp.join("vmlinuz"), &image)?;
    let boot = match bzimage::pvh_kernel(&image) {
        Ok(elf) => {
            write_file(&tmp.join("vmlinux"), &elf)?;
            format!(
                "vmlinux ({} bytes, the PVH ELF kernel taken out of the bzImage)",
                elf.len()
            )
        }
        Err(e) => format!(
            "vmlinuz (bzImage); cannot take a PVH vmlinux out of {}: {e}",
            kernel.vmlinuz.display()
        ),
    };
    let header = format!(
        "# nestlab {VERSION} probe appliance\n# kernel {} ({}, from {})\n# modules {}\n# boot {boot}\n# initrd {size} bytes, uncompressed newc cpio\n",
        kernel.version,
        kernel.vmlinuz.display(),
        kernel.origin,
        kernel.modules_dir.display(),
    );
    write_file(
        &tmp.join("manifest.txt"),
        format!("{header}{manifest}").as_bytes(),
    )
}

/// Writes a whole file, 0644, synced.
fn write_file(path: &Path, data: &[u8]) -> Result<(), ApplianceError> {
    let mut f = fs::File::create(path).map_err(write_err(path))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(write_err(path))?;
    set_mode(path, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "nestlab-appl-{tag}-{}-{}",
            std::process::id(),
            crate::guest::protocol::Nonce::generate()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A fake `dpkg -x` kernel tree: root/boot/vmlinuz-<v>, root/lib/modules/<v>.
    fn fake_kernel(root: &Path, version: &str) -> PathBuf {
        fs::create_dir_all(root.join("boot")).unwrap();
        fs::create_dir_all(root.join("lib/modules").join(version)).unwrap();
        let k = root.join("boot").join(format!("vmlinuz-{version}"));
        fs::write(&k, b"kernel").unwrap();
        k
    }

    fn env_for(dir: &Path) -> HostEnv {
        HostEnv {
            release: Some("9.9.9-host".into()),
            boot_dir: dir.join("hostboot"),
            lib_modules: dir.join("hostlib"),
            ..HostEnv::default()
        }
    }

    #[test]
    fn prune_keeps_the_current_and_recently_used_entries() {
        let cache = tempfile::tempdir().unwrap();
        let a = cache.path().join("appliance");
        for e in ["current", "old", "recent", ".tmp-building"] {
            fs::create_dir_all(a.join(e)).unwrap();
            fs::write(a.join(e).join("initrd.img"), vec![0u8; 1000]).unwrap();
        }
        let hour_ago = SystemTime::now() - Duration::from_secs(7200);
        for e in ["current", "old", ".tmp-building"] {
            fs::File::open(a.join(e))
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
        let current = a.join("current");
        let removed = prune(cache.path(), &[&current], PRUNE_MIN_AGE).unwrap();
        assert_eq!(
            removed,
            vec![Pruned {
                dir: a.join("old"),
                bytes: 1000
            }]
        );
        assert!(current.is_dir() && a.join("recent").is_dir() && a.join(".tmp-building").is_dir());
        // Nothing cached at all: nothing to do.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(prune(empty.path(), &[], PRUNE_MIN_AGE).unwrap(), vec![]);
    }

    #[test]
    fn lpj_from_host_mhz_and_kernel_hz() {
        let cpuinfo = "processor\t: 0\ncpu MHz\t\t: 2596.128\nflags\t: fpu\n";
        assert_eq!(
            boot_args_for_tcg(cpuinfo, Some("CONFIG_X=y\nCONFIG_HZ=250\n")),
            Some("lpj=10384512".into())
        );
        assert_eq!(
            boot_args_for_tcg(cpuinfo, Some("CONFIG_HZ=1000\n")),
            Some("lpj=2596128".into())
        );
        // Either unknown: nothing added (the kernel measures as usual).
        assert_eq!(boot_args_for_tcg(cpuinfo, None), None);
        assert_eq!(boot_args_for_tcg(cpuinfo, Some("CONFIG_HZ_250=y\n")), None);
        assert_eq!(
            boot_args_for_tcg("flags: fpu\n", Some("CONFIG_HZ=250\n")),
            None
        );
        assert_eq!(
            boot_args_for_tcg("cpu MHz : nan\n", Some("CONFIG_HZ=250\n")),
            None
        );
        assert_eq!(
            boot_args_for_tcg("cpu MHz : 2000\n", Some("CONFIG_HZ=0\n")),
            None
        );
    }

    #[test]
    fn cache_dir_order() {
        let mut env = HostEnv {
            home: Some("/home/u".into()),
            ..HostEnv::default()
        };
        assert_eq!(
            env.cache_dir().unwrap(),
            Path::new("/home/u/.cache/nestlab")
        );
        env.xdg_cache = Some("/x".into());
        assert_eq!(env.cache_dir().unwrap(), Path::new("/x/nestlab"));
        env.root = true;
        assert_eq!(env.cache_dir().unwrap(), Path::new("/var/cache/nestlab"));
        env.cache = Some("/c".into());
        assert_eq!(env.cache_dir().unwrap(), Path::new("/c"));
        assert!(matches!(
            HostEnv::default().cache_dir(),
            Err(ApplianceError::NoCacheDir)
        ));
    }

    #[test]
    fn kernel_source_order() {
        let d = tmp("locate");
        let cache = d.join("cache");
        let mut env = env_for(&d);
        let spec = ApplianceSpec::default();
        // Nothing at all.
        let e = locate(&spec, &env, &cache).unwrap_err();
        assert!(matches!(e, ApplianceError::NoKernel { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("vmlinuz-9.9.9-host") && msg.contains("./dev setup"),
            "{msg}"
        );
        // The cache: newest version wins.
        fake_kernel(&cache.join("kernel"), "6.1.0-9-amd64");
        fake_kernel(&cache.join("kernel"), "6.1.0-10-amd64");
        let k = locate(&spec, &env, &cache).unwrap();
        assert_eq!(
            (k.origin, k.version.as_str()),
            (KernelOrigin::Cache, "6.1.0-10-amd64")
        );
        assert_eq!(
            k.modules_dir,
            cache.join("kernel/lib/modules/6.1.0-10-amd64")
        );
        // The host's kernel beats the cache.
        fs::create_dir_all(env.lib_modules.join("9.9.9-host")).unwrap();
        fs::create_dir_all(&env.boot_dir).unwrap();
        fs::write(env.boot_dir.join("vmlinuz-9.9.9-host"), b"k").unwrap();
        let k = locate(&spec, &env, &cache).unwrap();
        assert_eq!(
            (k.origin, k.version.as_str()),
            (KernelOrigin::Host, "9.9.9-host")
        );
        // $NESTLAB_KERNEL beats the host; its modules are derived from the tree.
        let envk = fake_kernel(&d.join("envtree"), "5.10.0-1-amd64");
        env.kernel = Some(envk.clone());
        let k = locate(&spec, &env, &cache).unwrap();
        assert_eq!(
            (k.origin, k.modules_dir.clone()),
            (
                KernelOrigin::Env,
                d.join("envtree/lib/modules/5.10.0-1-amd64")
            )
        );
        // An explicit kernel beats everything; a missing one is an error, not a fallback.
        let spec2 = ApplianceSpec {
            kernel: Some(d.join("nope/vmlinuz-1")),
            ..ApplianceSpec::default()
        };
        let e = locate(&spec2, &env, &cache).unwrap_err();
        assert!(
            matches!(
                &e,
                ApplianceError::KernelMissing {
                    origin: KernelOrigin::Explicit,
                    ..
                }
            ),
            "{e}"
        );
        // A kernel without a version in its name needs --modules.
        fs::write(d.join("bzImage"), b"k").unwrap();
        let spec3 = ApplianceSpec {
            kernel: Some(d.join("bzImage")),
            ..ApplianceSpec::default()
        };
        assert!(matches!(
            locate(&spec3, &env, &cache),
            Err(ApplianceError::NoKernelVersion(_))
        ));
        let spec4 = ApplianceSpec {
            modules_dir: Some(env.lib_modules.join("9.9.9-host")),
            ..spec3
        };
        let k = locate(&spec4, &env, &cache).unwrap();
        assert_eq!(
            (k.origin, k.version.as_str()),
            (KernelOrigin::Explicit, "9.9.9-host")
        );
        // A missing modules directory says which.
        let k5 = fake_kernel(&d.join("t5"), "4.0");
        fs::remove_dir_all(d.join("t5/lib")).unwrap();
        let spec5 = ApplianceSpec {
            kernel: Some(k5),
            ..ApplianceSpec::default()
        };
        let e = locate(&spec5, &env, &cache).unwrap_err();
        assert!(matches!(e, ApplianceError::ModulesDirMissing { .. }));
        assert!(e.to_string().contains("t5/lib/modules/4.0"), "{e}");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn version_ordering() {
        let mut v = vec![
            "6.1.0-10-amd64",
            "6.1.0-9-amd64",
            "6.10.0-1-amd64",
            "6.2.0-1-amd64",
        ];
        v.sort_by_key(|s| version_key(s));
        assert_eq!(
            v,
            [
                "6.1.0-9-amd64",
                "6.1.0-10-amd64",
                "6.2.0-1-amd64",
                "6.10.0-1-amd64"
            ]
        );
    }

    #[test]
    fn plan_adds_parents_first_and_keeps_first() {
        let mut p = Plan::default();
        p.add("/a/b/c", Node::Symlink("x".into()));
        p.add("/a/b/c", Node::Dir);
        let keys: Vec<&str> = p.entries.keys().map(String::as_str).collect();
        assert_eq!(keys, ["/a", "/a/b", "/a/b/c"]);
        assert!(matches!(p.entries["/a/b/c"], Node::Symlink(_)));
    }

    /// The real thing, when this host has the Debian kernel `./dev setup`
    /// fetches and the host tools: builds, checks contents, builds again
    /// from the cache.
    #[test]
    fn builds_from_the_dev_kernel() {
        let root = Path::new("/var/cache/nestlab/kernel");
        let Some(k) = fs::read_dir(root.join("boot")).ok().and_then(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| version_from_name(p).is_some())
        }) else {
            return;
        };
        if !Path::new("/bin/busybox").exists() || find_program("lspci", "").is_err() {
            return;
        }
        let cache = tmp("build");
        let spec = ApplianceSpec {
            kernel: Some(k),
            cache_dir: Some(cache.clone()),
            ..ApplianceSpec::default()
        };
        let a = build(&spec).unwrap();
        assert!(!a.cached);
        for m in [
            "igb",
            "dca",
            "i2c_algo_bit",
            "kvm",
            "kvm_amd",
            "ccp",
            "vfio_pci",
            "vfio_iommu_type1",
        ] {
            assert!(
                a.modules.iter().any(|x| x == m),
                "{m} not in {:?}",
                a.modules
            );
        }
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&a.dir), 0o755);
        assert_eq!(mode(&a.initrd), 0o644);
        assert_eq!(mode(&a.kernel), 0o644);
        assert_eq!(mode(&a.bzimage), 0o644);
        assert_eq!(a.pvh_unavailable, None);
        assert_eq!(a.kernel, a.dir.join("vmlinux"));
        assert_eq!(&fs::read(&a.kernel).unwrap()[..4], b"\x7fELF");
        let manifest = fs::read_to_string(a.dir.join("manifest.txt")).unwrap();
        for needle in [
            "/init",
            "/bin/busybox",
            "/usr/bin/lspci",
            "/usr/bin/numactl",
            "/lib64/ld-linux-x86-64.so.2",
            "/etc/nestlab/modules",
            "igb.ko",
        ] {
            assert!(
                manifest.contains(needle),
                "{needle} missing from manifest:\n{manifest}"
            );
        }
        assert!(
            !manifest.contains("qemu-system-x86_64"),
            "base flavour stays small"
        );
        // The nested flavour, when this host has QEMU: everything of the
        // base one, plus QEMU, its firmware, the nested guest's kernel and
        // initramfs; the base initramfs for non-nested profiles.
        let nested = find_program(NESTED_QEMU.0, "").is_ok();
        if nested {
            let n = a.nested.as_ref().expect("nested flavour");
            assert!(!n.cached);
            assert!(n.initrd_size > a.initrd_size);
            assert_eq!(a.initrd_for(false).unwrap(), a.initrd.as_path());
            assert_eq!(a.initrd_for(true).unwrap(), n.initrd.as_path());
            let nm = fs::read_to_string(n.dir.join("manifest.txt")).unwrap();
            for needle in [
                "/usr/bin/qemu-system-x86_64",
                "/usr/share/qemu/bios-256k.bin",
                "/usr/share/qemu/kvmvapic.bin",
                "/usr/share/qemu/linuxboot_dma.bin",
                agent::NESTED_KERNEL_PATH,
                agent::NESTED_INITRD_PATH,
                "/usr/bin/lspci",
                "igb.ko",
            ] {
                assert!(nm.contains(needle), "{needle} missing from:\n{nm}");
            }
        } else {
            assert!(a.nested_unavailable.is_some());
            assert!(a.initrd_for(true).is_err());
        }
        let again = build(&spec).unwrap();
        assert!(again.cached);
        assert_eq!(again.hash, a.hash);
        assert_eq!(again.initrd_size, a.initrd_size);
        assert_eq!(
            again.nested.as_ref().map(|n| n.cached),
            nested.then_some(true)
        );
        // --initrd: a replaced initramfs is booted as is, nested or not.
        let mut replaced = again.clone();
        replaced.initrd = cache.join("other.img");
        assert_eq!(replaced.initrd_for(true).unwrap(), cache.join("other.img"));
        let entries: Vec<_> = fs::read_dir(cache.join("appliance"))
            .unwrap()
            .filter_map(Result::ok)
            .collect();
        assert_eq!(
            entries.len(),
            1 + usize::from(nested),
            "no temporary directory left behind"
        );
        let _ = fs::remove_dir_all(&cache);
    }
}
