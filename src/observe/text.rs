//! Line handling shared by the parsers: numbered lines, console noise,
//! kernel log prefixes, strict hex fields. Nothing here can panic: every
//! index goes through `get()`, and slices are only taken at positions of
//! ASCII bytes that were just matched.

use crate::model::{Bdf, PciId};

/// The lines of `input`, numbered from 1, without the `\r` of CRLF ends.
pub(crate) fn lines(input: &str) -> impl Iterator<Item = (usize, &str)> {
    input
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
}

/// At most `max` characters of `s`, for error messages; never splits a
/// character and replaces control characters so messages stay one line.
pub(crate) fn snippet(s: &str) -> String {
    const MAX: usize = 60;
    let mut out: String = s
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(MAX).is_some() {
        out.push_str("...");
    }
    out
}

/// Length of a kernel timestamp `[    0.123456]` at the start of `s`.
fn timestamp_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'[') {
        return None;
    }
    let mut digits = false;
    let mut dot = false;
    // A timestamp is short; do not scan far into a long line.
    for (i, &b) in bytes.iter().enumerate().skip(1).take(24) {
        match b {
            b'0'..=b'9' => digits = true,
            b'.' if digits && !dot => dot = true,
            b' ' if !digits => {}
            b']' if digits && dot => return Some(i + 1),
            _ => return None,
        }
    }
    None
}

/// Length of a printk caller id `[    T123]` / `[ C0]` at the start of `s`.
fn caller_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'[') {
        return None;
    }
    let mut i = 1;
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    if !matches!(bytes.get(i), Some(b'T') | Some(b'C')) {
        return None;
    }
    i += 1;
    let start = i;
    while bytes.get(i).is_some_and(|b| b.is_ascii_digit()) {
        i += 1;
    }
    if i == start || bytes.get(i) != Some(&b']') {
        return None;
    }
    Some(i + 1)
}

/// Length of a syslog level `<6>` at the start of `s`.
fn level_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'<') {
        return None;
    }
    let mut i = 1;
    while bytes.get(i).is_some_and(|b| b.is_ascii_digit()) && i < 5 {
        i += 1;
    }
    if i == 1 || bytes.get(i) != Some(&b'>') {
        return None;
    }
    Some(i + 1)
}

/// Length of the kernel log prefix at the start of `line` (syslog level,
/// timestamp, caller id, and the space after them), if it has one.
pub(crate) fn kernel_prefix_len(line: &str) -> Option<usize> {
    let mut pos = 0;
    let mut found = false;
    if let Some(n) = level_len(line) {
        pos += n;
        found = true;
    }
    if let Some(n) = line.get(pos..).and_then(timestamp_len) {
        pos += n;
        found = true;
        if let Some(n) = line.get(pos..).and_then(caller_len) {
            pos += n;
        }
    }
    if !found {
        return None;
    }
    if line.as_bytes().get(pos) == Some(&b' ') {
        pos += 1;
    }
    Some(pos)
}

/// The message of a kernel log line without its level, timestamp and
/// caller id; lines without them come back unchanged.
pub(crate) fn strip_kernel_prefix(line: &str) -> &str {
    kernel_prefix_len(line)
        .and_then(|n| line.get(n..))
        .unwrap_or(line)
}

/// True for kernel messages that a serial console mixes into command
/// output: lines with a timestamp or syslog level, and device messages
/// without a timestamp (`e1000e 0000:b5:00.0 eth0: ...`).
pub(crate) fn is_kernel_line(line: &str) -> bool {
    if kernel_prefix_len(line).is_some() {
        return true;
    }
    let mut words = line.split_whitespace();
    let (Some(driver), Some(addr)) = (words.next(), words.next()) else {
        return false;
    };
    let driver_like = !driver.is_empty()
        && driver
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let addr = addr.trim_end_matches(':');
    driver_like && addr.len() == 12 && addr.parse::<Bdf>().is_ok()
}

/// Byte position of a kernel timestamp that starts after the first
/// character of `line`: a console message that cut into the middle of a
/// line of command output.
pub(crate) fn find_inner_timestamp(line: &str) -> Option<usize> {
    line.match_indices('[')
        .map(|(i, _)| i)
        .filter(|&i| i > 0)
        .find(|&i| line.get(i..).and_then(timestamp_len).is_some())
}

/// The value of a string of exactly `len` hex digits (no sign, no spaces).
pub(crate) fn hex_exact(s: &str, len: usize) -> Option<u32> {
    if s.len() != len || len > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// A strict `vvvv:dddd` id: four hex digits on each side.
pub(crate) fn pci_id(s: &str) -> Option<PciId> {
    let (v, d) = s.split_once(':')?;
    let vendor = u16::try_from(hex_exact(v, 4)?).ok()?;
    let device = u16::try_from(hex_exact(d, 4)?).ok()?;
    Some(PciId::new(vendor, device))
}

/// A strict decimal number (digits only, no sign).
pub(crate) fn decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_prefixes() {
        assert_eq!(strip_kernel_prefix("[    0.123456] DMAR: x"), "DMAR: x");
        assert_eq!(strip_kernel_prefix("<6>[    0.123456] DMAR: x"), "DMAR: x");
        assert_eq!(strip_kernel_prefix("<6>DMAR: x"), "DMAR: x");
        assert_eq!(strip_kernel_prefix("[    0.1][    T1] DMAR: x"), "DMAR: x");
        assert_eq!(strip_kernel_prefix("DMAR: x"), "DMAR: x");
        assert_eq!(strip_kernel_prefix("[AHCI mode] x"), "[AHCI mode] x");
        assert_eq!(strip_kernel_prefix("[0000:b4]"), "[0000:b4]");
        assert!(is_kernel_line("[   12.345678] e1000e 0000:b5:00.0: x"));
        assert!(is_kernel_line("e1000e 0000:b5:00.0 eth0: Link up"));
        assert!(is_kernel_line("pci 0000:c9:10.4: [8086:10ca] type 00"));
        assert!(!is_kernel_line(
            "0000:b5:00.0 Ethernet controller [0200]: x"
        ));
        assert!(!is_kernel_line(" |           +-01.0  Red Hat, Inc."));
        assert!(!is_kernel_line("-[0000:00]-+-00.0"));
        assert!(!is_kernel_line("[ 1.2"));
    }

    #[test]
    fn inner_timestamp() {
        assert_eq!(find_inner_timestamp("ab[  1.5] x"), Some(2));
        assert_eq!(find_inner_timestamp("[  1.5] x"), None);
        assert_eq!(find_inner_timestamp("SATA [AHCI mode]"), None);
    }

    #[test]
    fn snippets_do_not_split_chars() {
        let s = "é".repeat(100);
        assert_eq!(snippet(&s).chars().count(), 63);
        assert_eq!(snippet("a\tb"), "a?b");
    }

    #[test]
    fn strict_numbers() {
        assert_eq!(hex_exact("b4", 2), Some(0xb4));
        assert_eq!(hex_exact("+4", 2), None);
        assert_eq!(pci_id("8086:10d3"), Some(PciId::new(0x8086, 0x10d3)));
        assert_eq!(pci_id("+086:10d3"), None);
        assert_eq!(decimal::<u32>("12"), Some(12));
        assert_eq!(decimal::<u32>("+12"), None);
        assert_eq!(decimal::<u32>("99999999999"), None);
    }
}
