//! The nested flavour ([`NestedFlavour`]): the base initramfs followed by
//! an LZ4 compressed archive ([`super::lz4`]) holding what the nested step
//! adds: `qemu-system-x86_64` with its libraries, the firmware it loads,
//! and the nested guest's kernel and tiny initramfs. Cached in an entry of
//! its own next to the base one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::cache::{materialize, set_mode};
use super::hash::hash;
use super::plan::{
    add_busybox, add_pci_ids, add_program, env_file, skeleton, Contents, Node, Plan, Source,
};
use super::write::{write_cpio, write_file, write_initrd};
use super::{lz4, read_err, write_err, ApplianceError, GuestKernel, VERSION};
use crate::guest::agent;

/// The QEMU the nested flavour carries, and its Debian package.
pub(super) const NESTED_QEMU: (&str, &str) = ("qemu-system-x86_64", "qemu-system-x86");

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
pub(super) const FIRMWARE_DIRS: &[&str] = &[
    "/usr/share/qemu",
    "/usr/share/seabios",
    "/usr/lib/ipxe/qemu",
];

/// The busybox applets the nested guest's `/init` uses.
const NESTED_APPLETS: &[&str] = &["sh", "mkdir", "mount", "dmesg", "echo", "poweroff", "cat"];

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

/// Builds (or finds) the nested flavour next to the base entry.
pub(super) fn build_nested(
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
