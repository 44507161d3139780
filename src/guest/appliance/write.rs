//! Turning a plan into files: the newc cpio archive and its manifest
//! ([`write_cpio`], [`write_initrd`]; `.zst` modules are decompressed on
//! the way), and the base entry ([`fill`]: `initrd.img`, the bzImage as
//! `vmlinuz`, the PVH `vmlinux` when it can be taken out of it,
//! `manifest.txt`).

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::bzimage;
use super::cache::set_mode;
use super::cpio::CpioWriter;
use super::plan::{Node, Plan, Source};
use super::{read_err, write_err, ApplianceError, GuestKernel, VERSION};

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
pub(super) fn write_cpio<W: Write>(
    plan: &Plan,
    w: W,
    path: &Path,
) -> Result<(W, String), ApplianceError> {
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
pub(super) fn write_initrd(plan: &Plan, path: &Path) -> Result<(u64, String), ApplianceError> {
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

/// Writes a complete entry into the (new) directory `tmp`.
pub(super) fn fill(tmp: &Path, plan: &Plan, kernel: &GuestKernel) -> Result<(), ApplianceError> {
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
pub(super) fn write_file(path: &Path, data: &[u8]) -> Result<(), ApplianceError> {
    let mut f = fs::File::create(path).map_err(write_err(path))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(write_err(path))?;
    set_mode(path, 0o644)
}
