//! `lspci -D -nn`: one line per device with class and vendor:device ids.
//!
//! The line is `[dddd:]bb:ss.f Class name [cccc]: Description [vvvv:dddd]`
//! followed by `(rev xx)` when the revision is not 0 and, with `-v`,
//! `(prog-if xx [name])`. Without a pci.ids file the class name is `Class`
//! and the description `Device`; with `-n` both names are left out
//! (`0200: 8086:10d3`). Indented `-v` detail lines are skipped.

use serde::{Deserialize, Serialize};

use super::text;
use super::ParseError;
use crate::model::{Bdf, PciId};

/// One device line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciDevice {
    /// Address (domain 0 when lspci printed none).
    pub bdf: Bdf,
    /// Class name (`Ethernet controller`); `None` with `-n` or without pci.ids.
    pub class_name: Option<String>,
    /// Base class and subclass, as printed in brackets: `0x0200`.
    pub class: u16,
    /// vendor:device.
    pub id: PciId,
    /// Vendor and device names (`Intel Corporation 82574L Gigabit Network
    /// Connection`); `None` with `-n` or when lspci printed only `Device`.
    pub description: Option<String>,
    /// Revision, printed only when not 0.
    pub revision: Option<u8>,
    /// Programming interface, printed only with `-v`.
    pub prog_if: Option<u8>,
    /// 1-based line in the capture.
    pub line: usize,
}

impl PciDevice {
    /// The class as lspci prints it: `0200`.
    pub fn class_hex(&self) -> String {
        format!("{:04x}", self.class)
    }
}

/// Parses `lspci -D -nn` (also `-n`, `-nn -v`, and addresses without domain).
///
/// Empty output gives an empty list.
///
/// # Errors
/// A [`ParseError`] naming the line when a device line has a bad address,
/// no class code, or no `[vendor:device]` id (lspci run without `-nn`).
pub fn parse(input: &str) -> Result<Vec<PciDevice>, ParseError> {
    let mut out = Vec::new();
    for (n, line) in text::lines(input) {
        if line.trim().is_empty()
            || line.starts_with([' ', '\t'])
            || text::is_kernel_line(line)
            || line.starts_with("lspci: ")
            || line.starts_with("pcilib: ")
        {
            continue;
        }
        out.push(parse_line(n, line)?);
    }
    Ok(out)
}

fn err(line: usize, message: String) -> ParseError {
    ParseError::at(line, message)
}

fn parse_line(n: usize, line: &str) -> Result<PciDevice, ParseError> {
    let (addr, rest) = line.split_once(' ').unwrap_or((line, ""));
    let bdf: Bdf = addr
        .parse()
        .map_err(|_| err(n, format!("cannot read '{}'", text::snippet(line))))?;
    let (class_part, desc_part) = rest.split_once(": ").ok_or_else(|| {
        err(
            n,
            format!(
                "no 'class: device' after {addr} in '{}'",
                text::snippet(line)
            ),
        )
    })?;
    let (class_name, class) = parse_class(class_part).ok_or_else(|| {
        err(
            n,
            format!(
                "no class code like [0200] in '{}'",
                text::snippet(class_part)
            ),
        )
    })?;

    let mut desc = desc_part.trim_end();
    let mut prog_if = None;
    if let Some((head, tail)) = desc.rsplit_once(" (prog-if ") {
        if let Some(code) = tail
            .strip_suffix(')')
            .and_then(|t| text::hex_exact(t.get(..2)?, 2))
        {
            prog_if = Some(code as u8);
            desc = head;
        }
    }
    let mut revision = None;
    if let Some((head, tail)) = desc.rsplit_once(" (rev ") {
        if let Some(rev) = tail.strip_suffix(')').and_then(|t| text::hex_exact(t, 2)) {
            revision = Some(rev as u8);
            desc = head;
        }
    }
    let desc = desc.trim();
    let (description, id) = if let Some(id) = text::pci_id(desc) {
        (None, id)
    } else {
        let found = desc
            .strip_suffix(']')
            .and_then(|d| d.rsplit_once(" ["))
            .and_then(|(head, id)| Some((head, text::pci_id(id)?)));
        match found {
            Some((head, id)) => {
                let head = head.trim();
                (
                    (!head.is_empty() && head != "Device").then(|| head.to_string()),
                    id,
                )
            }
            None => {
                return Err(err(
                    n,
                    format!(
                        "no [vendor:device] id in '{}' (was lspci run with -nn?)",
                        text::snippet(desc)
                    ),
                ))
            }
        }
    };
    Ok(PciDevice {
        bdf,
        class_name,
        class,
        id,
        description,
        revision,
        prog_if,
        line: n,
    })
}

/// `Ethernet controller [0200]`, `Class [0200]`, `0200`, `Class 0200`.
fn parse_class(s: &str) -> Option<(Option<String>, u16)> {
    let s = s.trim();
    let code = |t: &str| text::hex_exact(t, 4).map(|c| c as u16);
    if let Some(c) = code(s) {
        return Some((None, c));
    }
    if let Some(c) = s.strip_prefix("Class ").and_then(code) {
        return Some((None, c));
    }
    let (name, c) = s.strip_suffix(']')?.rsplit_once(" [")?;
    let c = code(c)?;
    let name = name.trim();
    let name = (!name.is_empty() && name != "Class").then(|| name.to_string());
    Some((name, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/observe/lspci/", $name))
        };
    }

    fn b(s: &str) -> Bdf {
        s.parse().unwrap()
    }
    fn find(v: &[PciDevice], bdf: &str) -> PciDevice {
        v.iter().find(|d| d.bdf == b(bdf)).unwrap().clone()
    }

    #[test]
    fn seed() {
        let v = parse(fixture!("seed.txt")).unwrap();
        assert_eq!(v.len(), 25);
        let nics: Vec<_> = v
            .iter()
            .filter(|d| d.id == PciId::new(0x8086, 0x10d3))
            .collect();
        assert_eq!(nics.len(), 9);
        let nic = find(&v, "0000:b5:00.0");
        assert_eq!(
            nic,
            PciDevice {
                bdf: b("b5:00.0"),
                class_name: Some("Ethernet controller".into()),
                class: 0x0200,
                id: PciId::new(0x8086, 0x10d3),
                description: Some("Intel Corporation 82574L Gigabit Network Connection".into()),
                revision: None,
                prog_if: None,
                line: 11,
            }
        );
        assert_eq!(nic.class_hex(), "0200");
        let port = find(&v, "b4:01.0");
        assert_eq!(port.class, 0x0604);
        assert_eq!(port.id, PciId::new(0x1b36, 0x000c));
        let sata = find(&v, "00:1f.2");
        assert_eq!(sata.revision, Some(2));
        assert_eq!(
            sata.description.as_deref(),
            Some(
                "Intel Corporation 82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA Controller [AHCI mode]"
            )
        );
    }

    #[test]
    fn sriov_and_virtio() {
        let v = parse(fixture!("sriov.txt")).unwrap();
        let vfs: Vec<Bdf> = v
            .iter()
            .filter(|d| d.id == PciId::new(0x8086, 0x10ca))
            .map(|d| d.bdf)
            .collect();
        assert_eq!(vfs, vec![b("c9:10.0"), b("c9:10.2"), b("c9:10.4")]);
        let pf = find(&v, "c9:00.0");
        assert_eq!((pf.id, pf.revision), (PciId::new(0x8086, 0x10c9), Some(1)));
        assert_eq!(find(&v, "ca:00.0").id, PciId::new(0x1af4, 0x1041));
    }

    #[test]
    fn old_missing_and_numeric_names() {
        let old = parse(fixture!("sriov-old-pciids.txt")).unwrap();
        let port = find(&old, "b4:00.0");
        assert_eq!(port.description.as_deref(), Some("Red Hat, Inc. Device"));
        assert_eq!(port.id, PciId::new(0x1b36, 0x000c));

        let none = parse(fixture!("sriov-no-pciids.txt")).unwrap();
        let pf = find(&none, "dd:00.0");
        assert_eq!((pf.class_name.as_deref(), pf.class), (None, 0x0200));
        assert_eq!((pf.description.as_deref(), pf.revision), (None, Some(1)));
        assert_eq!(pf.id, PciId::new(0x8086, 0x10c9));

        let num = parse(fixture!("sriov-numeric.txt")).unwrap();
        assert_eq!(num.len(), none.len());
        for (a, b) in num.iter().zip(&none) {
            assert_eq!(
                (a.bdf, a.class, a.id, a.revision),
                (b.bdf, b.class, b.id, b.revision)
            );
        }
    }

    #[test]
    fn verbose_and_prog_if() {
        let v = parse(fixture!("extras-verbose.txt")).unwrap();
        assert_eq!(v.len(), parse(fixture!("extras.txt")).unwrap().len());
        let sata = find(&v, "00:1f.2");
        assert_eq!((sata.revision, sata.prog_if), (Some(2), Some(1)));
        let xhci = find(&v, "01:00.0");
        assert_eq!((xhci.class, xhci.prog_if), (0x0c03, Some(0x30)));
        assert_eq!(
            xhci.description.as_deref(),
            Some("Red Hat, Inc. QEMU XHCI Host Controller")
        );
        let dmi = find(&v, "00:1e.0");
        assert_eq!((dmi.revision, dmi.prog_if), (Some(0x92), Some(1)));
        let balloon = find(&v, "02:00.0");
        assert_eq!(balloon.class_name.as_deref(), Some("Unclassified device"));
    }

    #[test]
    fn no_domain_and_host() {
        let v = parse(fixture!("single-no-domain.txt")).unwrap();
        assert_eq!(find(&v, "02:10.2").id, PciId::new(0x8086, 0x10ca));
        let host = parse(fixture!("host-virtio.txt")).unwrap();
        let balloon = find(&host, "00:01.0");
        assert_eq!(
            (balloon.class_name.as_deref(), balloon.class),
            (Some("Unassigned class"), 0xffff)
        );
        assert_eq!(
            find(&host, "00:00.0").description.as_deref(),
            Some("Intel Corporation Device")
        );
    }

    #[test]
    fn bad_lines() {
        let e = parse(fixture!("bad-no-ids.txt")).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.to_string().starts_with("line 2: no [vendor:device] id"),
            "{e}"
        );
        let e = parse(fixture!("bad-address.txt")).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.starts_with("cannot read '0000:b5:00 "), "{e}");
        assert!(parse("0000:00:00.0 Host bridge: Intel [8086:29c0]\n").is_err());
        assert!(parse("0000:00:00.0\n").is_err());
        assert!(parse("0000:00:00.0 Host bridge [0600]: x [8086:29c]\n").is_err());
        assert_eq!(parse("").unwrap(), vec![]);
        // Console noise and stderr warnings are skipped.
        let v = parse("lspci: Unable to load libkmod resources: error -2\r\n[    1.0] x\r\n0000:00:00.0 0600: 8086:29c0\r\n").unwrap();
        assert_eq!(v[0].line, 3);
    }
}
