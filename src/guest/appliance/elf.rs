//! Just enough ELF reading (64-bit little-endian, i.e. x86-64): a program's
//! interpreter and the libraries it needs (`DT_NEEDED`, `DT_RUNPATH`), and a
//! kernel module's `.modinfo` section.

/// Why a file could not be read as ELF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// No ELF magic.
    #[error("not an ELF file")]
    NotElf,
    /// 32-bit or big-endian.
    #[error("not a 64-bit little-endian ELF file")]
    Unsupported,
    /// A header, table or string points outside the file.
    #[error("corrupt ELF file: {0} is out of bounds")]
    OutOfBounds(&'static str),
}

/// What the dynamic loader needs to run a program or library.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dynamic {
    /// `PT_INTERP`: the dynamic loader (None for static programs and
    /// for libraries).
    pub interp: Option<String>,
    /// `DT_NEEDED`: sonames, in order.
    pub needed: Vec<String>,
    /// `DT_RUNPATH` (or `DT_RPATH`) directories.
    pub runpath: Vec<String>,
}

fn bytes<'a>(b: &'a [u8], off: u64, len: u64, what: &'static str) -> Result<&'a [u8], ElfError> {
    let start = usize::try_from(off).map_err(|_| ElfError::OutOfBounds(what))?;
    let len = usize::try_from(len).map_err(|_| ElfError::OutOfBounds(what))?;
    start
        .checked_add(len)
        .and_then(|end| b.get(start..end))
        .ok_or(ElfError::OutOfBounds(what))
}

fn u16_at(b: &[u8], off: u64, what: &'static str) -> Result<u16, ElfError> {
    let s = bytes(b, off, 2, what)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: u64, what: &'static str) -> Result<u32, ElfError> {
    let s = bytes(b, off, 4, what)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: u64, what: &'static str) -> Result<u64, ElfError> {
    let s = bytes(b, off, 8, what)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

/// The NUL-terminated string at `off` (lossy UTF-8).
fn cstr(b: &[u8], off: u64, what: &'static str) -> Result<String, ElfError> {
    let start = usize::try_from(off).map_err(|_| ElfError::OutOfBounds(what))?;
    let tail = b.get(start..).ok_or(ElfError::OutOfBounds(what))?;
    let end = tail
        .iter()
        .position(|&c| c == 0)
        .ok_or(ElfError::OutOfBounds(what))?;
    Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
}

fn check_header(b: &[u8]) -> Result<(), ElfError> {
    if b.len() < 4 || &b[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if b.len() < 64 || b[4] != 2 || b[5] != 1 {
        return Err(ElfError::Unsupported);
    }
    Ok(())
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// Reads the interpreter, needed libraries and run path of a program or
/// shared library.
///
/// # Errors
/// [`ElfError`] when the bytes are not a 64-bit little-endian ELF file or
/// its tables point outside it.
pub fn dynamic(b: &[u8]) -> Result<Dynamic, ElfError> {
    check_header(b)?;
    let phoff = u64_at(b, 0x20, "e_phoff")?;
    let phentsize = u64::from(u16_at(b, 0x36, "e_phentsize")?);
    let phnum = u64::from(u16_at(b, 0x38, "e_phnum")?);
    let mut out = Dynamic::default();
    let mut loads = Vec::new();
    let mut dynamic = None;
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i * phentsize)
            .ok_or(ElfError::OutOfBounds("program header"))?;
        let p_type = u32_at(b, ph, "p_type")?;
        let offset = u64_at(b, ph + 8, "p_offset")?;
        let vaddr = u64_at(b, ph + 16, "p_vaddr")?;
        let filesz = u64_at(b, ph + 32, "p_filesz")?;
        match p_type {
            PT_LOAD => loads.push((vaddr, offset, filesz)),
            PT_DYNAMIC => dynamic = Some((offset, filesz)),
            PT_INTERP => out.interp = Some(cstr(b, offset, "PT_INTERP")?),
            _ => {}
        }
    }
    let Some((dyn_off, dyn_size)) = dynamic else {
        return Ok(out);
    };
    let table = bytes(b, dyn_off, dyn_size, "PT_DYNAMIC")?;
    let mut strtab = None;
    let mut needed = Vec::new();
    let mut runpath = Vec::new();
    for entry in table.chunks_exact(16) {
        let tag = u64_at(entry, 0, "d_tag")?;
        let val = u64_at(entry, 8, "d_val")?;
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed.push(val),
            DT_STRTAB => strtab = Some(val),
            DT_RPATH | DT_RUNPATH => runpath.push(val),
            _ => {}
        }
    }
    if needed.is_empty() && runpath.is_empty() {
        return Ok(out);
    }
    let strtab = strtab.ok_or(ElfError::OutOfBounds("DT_STRTAB"))?;
    let strtab_off = loads
        .iter()
        .find(|(vaddr, _, filesz)| strtab >= *vaddr && strtab - vaddr < *filesz)
        .map(|(vaddr, offset, _)| strtab - vaddr + offset)
        .ok_or(ElfError::OutOfBounds("DT_STRTAB"))?;
    for n in needed {
        out.needed
            .push(cstr(b, strtab_off.saturating_add(n), "DT_NEEDED")?);
    }
    for r in runpath {
        let path = cstr(b, strtab_off.saturating_add(r), "DT_RUNPATH")?;
        out.runpath.extend(
            path.split(':')
                .filter(|p| !p.is_empty())
                .map(str::to_string),
        );
    }
    Ok(out)
}

const PT_NOTE: u32 = 4;
/// `XEN_ELFNOTE_PHYS32_ENTRY`: the 32-bit PVH entry point QEMU's direct
/// kernel boot uses for an ELF kernel.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// Whether `b` is a kernel QEMU can boot directly through PVH: an ELF
/// executable whose loadable segments all lie inside the file (so a cut
/// short decompression is caught) with a `Xen` note of type
/// `XEN_ELFNOTE_PHYS32_ENTRY`.
///
/// # Errors
/// [`ElfError`] when the bytes are not a 64-bit little-endian ELF file or
/// a segment lies outside it.
pub fn is_pvh_kernel(b: &[u8]) -> Result<bool, ElfError> {
    check_header(b)?;
    let phoff = u64_at(b, 0x20, "e_phoff")?;
    let phentsize = u64::from(u16_at(b, 0x36, "e_phentsize")?);
    let phnum = u64::from(u16_at(b, 0x38, "e_phnum")?);
    let mut pvh = false;
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i * phentsize)
            .ok_or(ElfError::OutOfBounds("program header"))?;
        let p_type = u32_at(b, ph, "p_type")?;
        let offset = u64_at(b, ph + 8, "p_offset")?;
        let filesz = u64_at(b, ph + 32, "p_filesz")?;
        let seg = bytes(b, offset, filesz, "segment")?;
        if p_type != PT_NOTE {
            continue;
        }
        let mut at = 0usize;
        while at + 12 <= seg.len() {
            let namesz = u32_at(seg, at as u64, "note")? as usize;
            let descsz = u32_at(seg, at as u64 + 4, "note")? as usize;
            let ntype = u32_at(seg, at as u64 + 8, "note")?;
            let name_at = at + 12;
            let desc_at = name_at + namesz.div_ceil(4) * 4;
            let next = desc_at.saturating_add(descsz.div_ceil(4) * 4);
            let name = seg
                .get(name_at..name_at + namesz)
                .ok_or(ElfError::OutOfBounds("note"))?;
            if name == b"Xen\0" && ntype == XEN_ELFNOTE_PHYS32_ENTRY {
                pvh = true;
            }
            at = next;
        }
    }
    Ok(pvh)
}

/// The contents of the section called `name`, if the file has one.
///
/// # Errors
/// [`ElfError`] when the bytes are not a 64-bit little-endian ELF file or
/// its section table points outside it.
pub fn section<'a>(b: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, ElfError> {
    check_header(b)?;
    let shoff = u64_at(b, 0x28, "e_shoff")?;
    let shentsize = u64::from(u16_at(b, 0x3a, "e_shentsize")?);
    let shnum = u64::from(u16_at(b, 0x3c, "e_shnum")?);
    let shstrndx = u64::from(u16_at(b, 0x3e, "e_shstrndx")?);
    let header = |i: u64| -> Result<(u32, u64, u64), ElfError> {
        let sh = shoff
            .checked_add(i * shentsize)
            .ok_or(ElfError::OutOfBounds("section header"))?;
        Ok((
            u32_at(b, sh, "sh_name")?,
            u64_at(b, sh + 0x18, "sh_offset")?,
            u64_at(b, sh + 0x20, "sh_size")?,
        ))
    };
    if shnum == 0 {
        return Ok(None);
    }
    let (_, names_off, _) = header(shstrndx)?;
    for i in 0..shnum {
        let (name_idx, offset, size) = header(i)?;
        if cstr(
            b,
            names_off.saturating_add(u64::from(name_idx)),
            "section name",
        )? == name
        {
            return bytes(b, offset, size, "section").map(Some);
        }
    }
    Ok(None)
}

/// The `key=value` pairs of a kernel module's `.modinfo` section, in order.
///
/// # Errors
/// [`ElfError`] as for [`section`].
pub fn modinfo(b: &[u8]) -> Result<Vec<(String, String)>, ElfError> {
    let Some(sec) = section(b, ".modinfo")? else {
        return Ok(Vec::new());
    };
    Ok(sec
        .split(|&c| c == 0)
        .filter_map(|kv| {
            let s = String::from_utf8_lossy(kv);
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_elf() {
        assert_eq!(dynamic(b"#!/bin/sh\n"), Err(ElfError::NotElf));
        assert_eq!(dynamic(b"\x7fELF\x01\x01"), Err(ElfError::Unsupported));
        let mut h = vec![0u8; 64];
        h[..6].copy_from_slice(b"\x7fELF\x02\x01");
        h[0x20] = 0xff; // e_phoff far away
        h[0x38] = 1; // one program header
        assert!(matches!(dynamic(&h), Err(ElfError::OutOfBounds(_))));
        assert!(section(&h, ".modinfo").is_ok());
    }

    #[test]
    fn never_panics_on_truncations() {
        let Ok(b) = std::fs::read("/bin/sh") else {
            return;
        };
        for len in (0..b.len().min(4096)).step_by(3) {
            let _ = dynamic(&b[..len]);
            let _ = section(&b[..len], ".dynstr");
        }
    }

    #[test]
    fn reads_a_host_program() {
        // Any dynamically linked program on a glibc host will do.
        let Ok(b) = std::fs::read("/bin/sh") else {
            return;
        };
        let d = dynamic(&b).unwrap();
        assert!(
            d.interp.as_deref().is_some_and(|i| i.contains("ld-linux")),
            "{d:?}"
        );
        assert!(d.needed.iter().any(|n| n.starts_with("libc.so")), "{d:?}");
    }
}
