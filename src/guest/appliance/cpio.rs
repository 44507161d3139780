//! A writer of cpio "newc" archives (the format the kernel unpacks as an
//! initramfs; see the kernel's Documentation/driver-api/early-userspace/
//! buffer-format.rst).
//!
//! Each entry is a 110-byte ASCII header (`070701` and thirteen 8-digit
//! hex fields), the NUL-terminated name, padding to a multiple of 4, the
//! data, padding to a multiple of 4. The archive ends with an entry named
//! `TRAILER!!!`. Owners are root, mtimes 0, so the same inputs always give
//! the same bytes.
//!
//! Hand-written, not the `cpio` crate: that crate (0.4) writes newc
//! entries too, device nodes included, but with lowercase hex fields, no
//! padding of the archive to 512 bytes and inode numbers left to the
//! caller. Switching would change the bytes of every initramfs in the
//! cache for the same inputs, to save the 140 lines of the writer below.

use std::io::{self, Write};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Writes a newc archive entry by entry. Parents must come before their
/// children (the kernel does not create missing directories).
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive.
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// A directory (`path` like `/usr/bin`; the leading `/` is dropped).
    ///
    /// # Errors
    /// Any error of the underlying writer.
    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        self.entry(path, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[])
    }

    /// A regular file.
    ///
    /// # Errors
    /// Any error of the underlying writer; `InvalidInput` for data of 4 GiB
    /// or more.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// A symbolic link to `target`.
    ///
    /// # Errors
    /// Any error of the underlying writer.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node.
    ///
    /// # Errors
    /// Any error of the underlying writer.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(path, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    /// Writes the trailer, pads the archive to a multiple of 512 bytes and
    /// returns the writer (flushed).
    ///
    /// # Errors
    /// Any error of the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.next_ino = 0;
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        let pad = (512 - (self.written % 512)) % 512;
        self.put(&vec![0u8; pad as usize])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad4(&mut self) -> io::Result<()> {
        let pad = (4 - (self.written % 4)) % 4;
        self.put(&[0u8; 3][..pad as usize])
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        let name = path.trim_start_matches('/');
        let name = if name.is_empty() { "." } else { name };
        if name.as_bytes().contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cpio name {name:?} contains NUL"),
            ));
        }
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}: too big for cpio newc"),
            )
        })?;
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for f in fields {
            header.push_str(&format!("{f:08X}"));
        }
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad4()?;
        self.put(data)?;
        self.pad4()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::skip_or_fail;
    use std::path::Path;
    use std::process::Command;

    /// An archive entry as the test reader sees it: name, mode, data, rdev.
    type Entry = (String, u32, Vec<u8>, (u32, u32));

    /// A minimal newc reader for the tests.
    fn read(archive: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut at = 0;
        let hex = |s: &[u8]| u32::from_str_radix(std::str::from_utf8(s).unwrap(), 16).unwrap();
        loop {
            let h = &archive[at..at + 110];
            assert_eq!(&h[..6], b"070701");
            let field = |i: usize| hex(&h[6 + 8 * i..14 + 8 * i]);
            let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
            let name = std::str::from_utf8(&archive[at + 110..at + 110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(archive[at + 110 + namesize - 1], 0);
            at = (at + 110 + namesize + 3) & !3;
            let data = archive[at..at + size].to_vec();
            at = (at + size + 3) & !3;
            if name == "TRAILER!!!" {
                assert_eq!(archive.len() % 512, 0);
                assert!(archive[at..].iter().all(|&b| b == 0));
                return out;
            }
            out.push((name, mode, data, (field(9), field(10))));
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("/bin", 0o755).unwrap();
        w.file("/bin/hello", 0o755, b"#!/bin/sh\necho hi\n")
            .unwrap();
        w.file("/empty", 0o644, b"").unwrap();
        w.file("/odd-name-5", 0o644, b"abcde").unwrap();
        w.symlink("/bin/sh", "hello").unwrap();
        w.dir("/dev", 0o755).unwrap();
        w.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_through_a_reader() {
        let entries = read(&sample());
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/hello",
                "empty",
                "odd-name-5",
                "bin/sh",
                "dev",
                "dev/console"
            ]
        );
        assert_eq!(entries[1].1, 0o100755);
        assert_eq!(entries[1].2, b"#!/bin/sh\necho hi\n");
        assert_eq!(entries[3].2, b"abcde");
        assert_eq!(entries[4].1, 0o120777);
        assert_eq!(entries[4].2, b"hello");
        assert_eq!(entries[6].1, 0o020600);
        assert_eq!(entries[6].3, (5, 1));
    }

    #[test]
    fn same_input_same_bytes() {
        assert_eq!(sample(), sample());
    }

    #[test]
    fn busybox_cpio_lists_it() {
        // Cross-check with an independent reader when the host has one.
        if !Path::new("/bin/busybox").exists() {
            skip_or_fail("/bin/busybox is missing (apt-get install busybox-static)");
            return;
        }
        let path = std::env::temp_dir().join(format!("nestlab-cpio-{}.cpio", std::process::id()));
        std::fs::write(&path, sample()).unwrap();
        let out = Command::new("/bin/busybox")
            .args(["cpio", "-t", "-F"])
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        let names: Vec<&str> = listing.lines().collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/hello",
                "empty",
                "odd-name-5",
                "bin/sh",
                "dev",
                "dev/console"
            ]
        );
    }
}
