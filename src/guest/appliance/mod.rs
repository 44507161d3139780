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
//!
//! This file is the public face (what to build, what was built, why not);
//! the work is in one module per concern:
//!
//! | module     | owns |
//! |------------|------|
//! | `cmdline`  | the kernel command line, `lpj=` under TCG |
//! | `kernel`   | which kernel, from where, with which modules |
//! | `host_env` | the environment those choices read |
//! | `plan`     | the initramfs path by path, the base plan |
//! | `libs`     | host programs and their shared library closure |
//! | `nested`   | the nested flavour |
//! | `hash`     | the cache key over everything that goes in |
//! | `write`    | plan -> cpio archive, manifest, the base entry |
//! | `cache`    | the cache directory, entries renamed into place, prune |
//! | [`bzimage`], [`elf`], [`kmod`], [`cpio`], [`lz4`] | the file formats |

pub mod bzimage;
mod cache;
mod cmdline;
pub mod cpio;
pub mod elf;
mod hash;
mod host_env;
mod kernel;
pub mod kmod;
mod libs;
pub mod lz4;
mod nested;
mod plan;
mod write;

use std::fs;
use std::path::{Path, PathBuf};

pub use cache::{cache_dir, prune, Pruned, PRUNE_MIN_AGE};
pub use cmdline::{default_cmdline, kernel_config};
pub use kernel::{locate_kernel, GuestKernel, KernelOrigin};
pub use nested::NestedFlavour;

use host_env::HostEnv;
use kmod::KmodError;
use libs::BIN_DIRS;
use nested::FIRMWARE_DIRS;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Modules the appliance carries by default (with their dependencies):
/// the NIC drivers, the virtio IOMMU (when the kernel has it), KVM, VFIO,
/// the shared folders' file systems, and what a disk-image guest's root
/// needs (virtio_blk, ext4 and the crc32c it wants).
pub const DEFAULT_MODULES: &[&str] = &[
    "igb",
    "igbvf",
    "e1000e",
    "virtio_net",
    "virtio_pci",
    "virtio_iommu",
    "kvm",
    "kvm_intel",
    "kvm_amd",
    "vfio",
    "vfio_pci",
    "vfio_iommu_type1",
    "virtio_blk",
    "crc32c_generic",
    "ext4",
    "9pnet_virtio",
    "9p",
    "virtiofs",
];

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
    let kernel = kernel::locate(spec, &env, &cache)?;
    build_with(spec, kernel, &cache)
}

fn build_with(
    spec: &ApplianceSpec,
    kernel: GuestKernel,
    cache: &Path,
) -> Result<Appliance, ApplianceError> {
    let contents = plan::base(&kernel, spec)?;
    let hash = hash::hash(&kernel, "base", &[&contents.plan])?;
    let appliances = cache.join("appliance");
    let dir = appliances.join(&hash);
    let initrd = dir.join("initrd.img");
    let vmlinuz = dir.join("vmlinuz");
    let vmlinux = dir.join("vmlinux");
    let complete = |d: &Path| d.join("initrd.img").is_file() && d.join("vmlinuz").is_file();
    let cached = cache::materialize(&appliances, &hash, &complete, |tmp| {
        write::fill(tmp, &contents.plan, &kernel)
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
        match nested::build_nested(&appliance.source, &contents, &appliances) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::agent;
    use crate::test_support::skip_or_fail;
    use kernel::version_from_name;
    use libs::find_program;
    use nested::NESTED_QEMU;
    use std::os::unix::fs::PermissionsExt;

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
            skip_or_fail("no kernel in /var/cache/nestlab/kernel/boot (run ./dev setup)");
            return;
        };
        for (tool, package) in [("busybox", "busybox-static"), ("lspci", "pciutils")] {
            if find_program(tool, package).is_err() {
                skip_or_fail(&format!(
                    "{tool} is not installed (apt-get install {package})"
                ));
                return;
            }
        }
        let scratch = tempfile::tempdir().unwrap();
        let cache = scratch.path().to_path_buf();
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
    }
}
