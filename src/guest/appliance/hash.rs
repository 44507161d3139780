//! The cache key: sha256 over everything that goes into an entry (the
//! flavour, nestlab's version, the entry format, the kernel, and every
//! planned path with its node). Host files count by real path, size and
//! mtime, not by content, so a cache hit stays instant.

use std::fs;
use std::path::Path;
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::plan::{Node, Plan, Source};
use super::{read_err, ApplianceError, GuestKernel, VERSION};

/// The layout of a cache entry; part of the hash, so bump it whenever the
/// builder writes something different from the same inputs.
const ENTRY_FORMAT: &str = "2 (vmlinuz, vmlinux, initrd.img, manifest.txt)";

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

pub(super) fn hash(
    kernel: &GuestKernel,
    flavour: &str,
    plans: &[&Plan],
) -> Result<String, ApplianceError> {
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
