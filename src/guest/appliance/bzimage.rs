//! Getting the uncompressed ELF kernel (vmlinux) out of a bzImage, so QEMU
//! can boot it through PVH.
//!
//! A bzImage carries the kernel compressed (Debian: xz); booted as such,
//! the guest decompresses it itself, which under TCG takes seconds (4.3 s
//! of a 9 s probe boot on the project's machines). QEMU's direct kernel
//! boot also takes an ELF vmlinux with a PVH entry note (`CONFIG_PVH=y`,
//! as in Debian's kernels) and loads it straight into guest memory. The
//! payload's place is in the boot protocol header (`payload_offset`,
//! `payload_length`, protocol 2.08+); it is decompressed with the host's
//! own tool (xz, gzip, zstd, bzip2, lz4, lzop).
//!
//! Hand-written: finding the payload takes four fields of the boot
//! header. The crate that knows the format, rust-vmm's `linux-loader`,
//! loads a bzImage into a VM's memory (through `vm-memory`) rather than
//! handing out its payload, and does not decompress it.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use super::elf::{self, ElfError};

/// Why no PVH kernel could be had from a kernel image.
#[derive(Debug, thiserror::Error)]
pub enum BzImageError {
    /// No `HdrS` boot header.
    #[error("not a bzImage (no HdrS boot header)")]
    NotBzImage,
    /// A boot protocol without payload fields.
    #[error("boot protocol {major}.{minor:02} has no payload fields (needs 2.08)")]
    OldProtocol {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// The payload lies outside the file.
    #[error("payload offset/length point outside the file")]
    BadPayload,
    /// A payload compression this code does not know.
    #[error("unknown payload compression (magic {0})")]
    UnknownCompression(String),
    /// The decompressor is not installed.
    #[error("{tool} is not installed")]
    ToolMissing {
        /// The program.
        tool: &'static str,
    },
    /// The decompressor failed.
    #[error("`{tool}` failed: {detail}")]
    ToolFailed {
        /// The program.
        tool: &'static str,
        /// Its message or the I/O error.
        detail: String,
    },
    /// The result is not a usable ELF kernel.
    #[error("decompressed payload is not a complete ELF kernel")]
    Elf(#[source] ElfError),
    /// An ELF kernel without the PVH entry note (`CONFIG_PVH` off).
    #[error("the kernel has no PVH entry note (built without CONFIG_PVH)")]
    NoPvh,
}

/// Decompressors by payload magic: magic, program, arguments.
const TOOLS: &[(&[u8], &str, &[&str])] = &[
    (b"\xfd7zXZ\x00", "xz", &["-dcq", "--single-stream"]),
    (b"\x1f\x8b", "gzip", &["-dcq"]),
    (b"\x28\xb5\x2f\xfd", "zstd", &["-dcq"]),
    (b"BZh", "bzip2", &["-dcq"]),
    (b"\x02\x21\x4c\x18", "lz4", &["-dcq"]),
    (b"\x89LZO", "lzop", &["-dcq"]),
    (b"\x5d\x00\x00", "xz", &["-dcq", "--format=lzma"]),
];

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(off)?,
        *b.get(off + 1)?,
        *b.get(off + 2)?,
        *b.get(off + 3)?,
    ]))
}

/// The compressed kernel inside a bzImage.
fn payload(image: &[u8]) -> Result<&[u8], BzImageError> {
    if image.get(0x202..0x206) != Some(b"HdrS") {
        return Err(BzImageError::NotBzImage);
    }
    let version = u16_at(image, 0x206).ok_or(BzImageError::NotBzImage)?;
    if version < 0x0208 {
        return Err(BzImageError::OldProtocol {
            major: (version >> 8) as u8,
            minor: version as u8,
        });
    }
    let setup_sects = match image.get(0x1f1).copied().ok_or(BzImageError::NotBzImage)? {
        0 => 4,
        n => usize::from(n),
    };
    let offset = u32_at(image, 0x248).ok_or(BzImageError::BadPayload)? as usize;
    let length = u32_at(image, 0x24c).ok_or(BzImageError::BadPayload)? as usize;
    let start = (setup_sects + 1) * 512 + offset;
    start
        .checked_add(length)
        .and_then(|end| image.get(start..end))
        .ok_or(BzImageError::BadPayload)
}

/// Runs `tool args` with `input` on stdin, returns stdout (and whether it
/// exited 0, and its stderr).
fn pipe(
    tool: &'static str,
    args: &[&str],
    input: &[u8],
) -> Result<(Vec<u8>, bool, String), BzImageError> {
    let failed = |e: std::io::Error| BzImageError::ToolFailed {
        tool,
        detail: e.to_string(),
    };
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                BzImageError::ToolMissing { tool }
            } else {
                failed(e)
            }
        })?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| failed(std::io::Error::other("no stdin")))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| failed(std::io::Error::other("no stdout")))?;
    let mut out = Vec::new();
    // Feed stdin from a second thread so a full stdout pipe cannot deadlock.
    let read = std::thread::scope(|s| {
        let writer = s.spawn(move || {
            // A tool that stops reading early (trailing bytes) is not an error here.
            let _ = stdin.write_all(input);
        });
        let r = stdout.read_to_end(&mut out);
        let _ = writer.join();
        r
    });
    read.map_err(failed)?;
    let output = child.wait_with_output().map_err(failed)?;
    Ok((
        out,
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).trim().to_string(),
    ))
}

/// The PVH-bootable ELF kernel inside `image`: `image` itself when it is
/// one already, else its decompressed bzImage payload.
///
/// # Errors
/// [`BzImageError`] saying why not; the caller then boots the image as it is.
pub fn pvh_kernel(image: &[u8]) -> Result<Vec<u8>, BzImageError> {
    if image.starts_with(b"\x7fELF") {
        return match elf::is_pvh_kernel(image) {
            Ok(true) => Ok(image.to_vec()),
            Ok(false) => Err(BzImageError::NoPvh),
            Err(e) => Err(BzImageError::Elf(e)),
        };
    }
    let payload = payload(image)?;
    let (_, tool, args) = TOOLS
        .iter()
        .find(|(magic, _, _)| payload.starts_with(magic))
        .ok_or_else(|| {
            BzImageError::UnknownCompression(
                payload.iter().take(4).map(|b| format!("{b:02x}")).collect(),
            )
        })?;
    let (out, ok, stderr) = pipe(tool, args, payload)?;
    // Some tools complain about the 4-byte size the kernel build appends
    // after the stream; the ELF check below is what decides.
    match elf::is_pvh_kernel(&out) {
        Ok(true) => Ok(out),
        Ok(false) => Err(BzImageError::NoPvh),
        Err(_) if !ok => Err(BzImageError::ToolFailed {
            tool,
            detail: stderr,
        }),
        Err(e) => Err(BzImageError::Elf(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::skip_or_fail;

    #[test]
    fn rejects_what_is_not_a_bzimage() {
        assert!(matches!(
            pvh_kernel(b"hello"),
            Err(BzImageError::NotBzImage)
        ));
        let mut img = vec![0u8; 0x300];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206] = 0x06;
        img[0x207] = 0x02;
        assert!(matches!(
            pvh_kernel(&img),
            Err(BzImageError::OldProtocol { major: 2, minor: 6 })
        ));
        img[0x206] = 0x0f;
        img[0x24c] = 0xff; // payload length beyond the file
        assert!(matches!(pvh_kernel(&img), Err(BzImageError::BadPayload)));
        img[0x24c] = 4;
        img[0x1f1] = 0; // 4 setup sectors: payload at 2560, beyond the file
        assert!(matches!(pvh_kernel(&img), Err(BzImageError::BadPayload)));
        img.resize(4096, 0);
        img[2560..2564].copy_from_slice(b"\x01\x02\x03\x04");
        assert!(
            matches!(pvh_kernel(&img), Err(BzImageError::UnknownCompression(m)) if m == "01020304")
        );
    }

    #[test]
    fn gzip_payload_round_trip() {
        // A fake bzImage whose payload is a gzip of a non-kernel: decompresses,
        // then fails the ELF check.
        let gz = match pipe("gzip", &["-c"], b"not an elf") {
            Ok((gz, true, _)) => gz,
            Ok((_, false, stderr)) => panic!("gzip -c failed: {stderr}"),
            Err(e @ BzImageError::ToolMissing { .. }) => {
                skip_or_fail(&e.to_string());
                return;
            }
            Err(e) => panic!("gzip -c: {e}"),
        };
        let mut img = vec![0u8; 5 * 512];
        img[0x1f1] = 4;
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&(gz.len() as u32).to_le_bytes());
        img.extend_from_slice(&gz);
        assert!(matches!(
            pvh_kernel(&img),
            Err(BzImageError::Elf(ElfError::NotElf))
        ));
    }

    #[test]
    fn the_dev_kernel_has_a_pvh_vmlinux() {
        let Some(k) = std::fs::read_dir("/var/cache/nestlab/kernel/boot")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().contains("vmlinuz-"))
        else {
            skip_or_fail("no kernel in /var/cache/nestlab/kernel/boot (run ./dev setup)");
            return;
        };
        let image = std::fs::read(&k).unwrap();
        match pvh_kernel(&image) {
            Ok(vmlinux) => assert!(vmlinux.len() > image.len()),
            Err(e @ BzImageError::ToolMissing { .. }) => skip_or_fail(&e.to_string()),
            Err(e) => panic!("{}: {e}", k.display()),
        }
    }
}
