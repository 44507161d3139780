//! LZ4 "legacy" framing, the LZ4 format the kernel unpacks an initramfs
//! from (`CONFIG_RD_LZ4`, lib/decompress_unlz4.c; what `lz4 -l` writes):
//! the magic `0x184C2102` (little-endian), then per chunk of at most 8 MiB
//! of input its compressed size (u32, little-endian) and one LZ4 block.
//!
//! The appliance's nested flavour appends the files the nested step needs
//! (QEMU and its libraries, the nested guest's kernel and initramfs) to
//! the uncompressed base archive as one such compressed cpio archive: the
//! kernel unpacks concatenated archives, compressed or not. Under TCG the
//! kernel unpacks 73 MB of cpio in about the same time uncompressed or as
//! 33 MB of LZ4 (0.6 s either way on the project's machines; gzip took
//! 1.3 s), so the smaller form is free.
//!
//! The blocks are `lz4_flex`'s; only the legacy framing around them is
//! written here, because `lz4_flex::frame` writes the current frame format
//! alone (magic `0x184D2204`), which the kernel's unlz4 does not take. Its
//! decoder reads legacy frames, but [`decompress_legacy`] (a check for the
//! tests) is not worth the `frame` feature (std, twox-hash).

/// The legacy frame's magic number.
const MAGIC: u32 = 0x184C_2102;

/// The kernel's (and `lz4 -l`'s) chunk size: input per block.
pub const CHUNK: usize = 8 << 20;

/// `data` compressed into the LZ4 legacy format.
pub fn compress_legacy(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 16);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    for chunk in data.chunks(CHUNK) {
        let block = lz4_flex::block::compress(chunk);
        // A block of 8 MiB never compresses to 4 GiB: the cast is exact.
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        out.extend_from_slice(&block);
    }
    out
}

/// The inverse of [`compress_legacy`], for tests and checks: `None` for
/// anything that is not a well-formed legacy stream of chunks of at most
/// [`CHUNK`] bytes.
pub fn decompress_legacy(mut data: &[u8]) -> Option<Vec<u8>> {
    let magic = data.get(..4)?;
    if u32::from_le_bytes(magic.try_into().ok()?) != MAGIC {
        return None;
    }
    data = &data[4..];
    let mut out = Vec::new();
    while !data.is_empty() {
        let size = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
        let block = data.get(4..4 + size)?;
        out.extend(lz4_flex::block::decompress(block, CHUNK).ok()?);
        data = &data[4 + size..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::skip_or_fail;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 3 == 0 {
                    (x >> 24) as u8
                } else {
                    (i / 7) as u8
                }
            })
            .collect()
    }

    #[test]
    fn round_trip_across_chunks() {
        for len in [0, 1, 100, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 77] {
            let data = sample(len);
            let c = compress_legacy(&data);
            assert_eq!(&c[..4], &[0x02, 0x21, 0x4c, 0x18]);
            assert_eq!(decompress_legacy(&c).as_deref(), Some(&data[..]), "{len}");
        }
        assert_eq!(
            decompress_legacy(b"\x02\x21\x4c\x18\xff\xff\xff\x00x"),
            None
        );
        assert_eq!(decompress_legacy(b"nope"), None);
    }

    /// The reference tool reads it, when this host has it.
    #[test]
    fn lz4_tool_reads_it() {
        let data = sample(CHUNK + 4096);
        let mut child = match Command::new("lz4")
            .args(["-dc"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                skip_or_fail("lz4 is not installed (apt-get install lz4)");
                return;
            }
            Err(e) => panic!("lz4 -dc: {e}"),
        };
        let c = compress_legacy(&data);
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&c));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }
}
