//! `grep . /sys/bus/pci/devices/*/numa_node`: each device's NUMA node.
//!
//! grep prefixes each value with its file name when it reads several files:
//! `/sys/bus/pci/devices/0000:b5:00.0/numa_node:0`. The node is -1 for a
//! device with no node (everything on pcie.0). With one file only, grep
//! prints no name (use `grep -H`); such a line is an error here.

use std::collections::BTreeMap;

use super::text;
use super::ParseError;
use crate::model::Bdf;

/// Parses the grep output into device -> NUMA node (-1 = none).
///
/// Empty output, or grep's `No such file or directory`, gives an empty map.
///
/// # Errors
/// A [`ParseError`] naming the line for a line without a device path and
/// `numa_node`, or a value that is not an integer.
pub fn parse(input: &str) -> Result<BTreeMap<Bdf, i32>, ParseError> {
    let mut out = BTreeMap::new();
    for (n, line) in text::lines(input) {
        let t = line.trim();
        if t.is_empty() || text::is_kernel_line(line) {
            continue;
        }
        let fail = |msg: String| ParseError::at(n, msg);
        if t.starts_with("grep:") && t.contains("No such file or directory") {
            continue;
        }
        let parsed = t.rsplit_once(':').and_then(|(path, value)| {
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            match parts.as_slice() {
                [.., dev, "numa_node"] => Some((*dev, value)),
                _ => None,
            }
        });
        let Some((dev, value)) = parsed else {
            return Err(fail(format!(
                "no '<device>/numa_node:' in '{}' (grep names no file when only one matches: use grep -H)",
                text::snippet(t)
            )));
        };
        let bdf: Bdf = dev
            .parse()
            .map_err(|_| fail(format!("'{}' is not a PCI address", text::snippet(dev))))?;
        let value = value.trim();
        let digits = value.strip_prefix('-').unwrap_or(value);
        let node = text::decimal::<i32>(digits)
            .map(|v| if value.starts_with('-') { -v } else { v })
            .ok_or_else(|| {
                fail(format!(
                    "NUMA node '{}' of {bdf} is not an integer",
                    text::snippet(value)
                ))
            })?;
        out.insert(bdf, node);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/observe/pci_numa/", $name))
        };
    }

    fn b(s: &str) -> Bdf {
        s.parse().unwrap()
    }

    #[test]
    fn seed() {
        let m = parse(fixture!("seed.txt")).unwrap();
        assert_eq!(m.len(), 25);
        assert_eq!(m.get(&b("00:1f.2")), Some(&-1));
        assert_eq!(m.get(&b("b5:00.0")), Some(&0));
        assert_eq!(m.get(&b("b4:02.0")), Some(&0));
        assert_eq!(m.get(&b("ca:00.0")), Some(&1));
        assert_eq!(m.get(&b("df:00.0")), Some(&2));
        assert_eq!(parse(fixture!("seed-crlf-console.txt")).unwrap(), m);
    }

    #[test]
    fn empty_and_missing() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse(fixture!("no-sysfs.txt")).unwrap().is_empty());
    }

    #[test]
    fn other_paths() {
        let m = parse("/sys/devices/pci0000:b4/0000:b4:00.0/0000:b5:00.0/numa_node:0\n").unwrap();
        assert_eq!(m.get(&b("b5:00.0")), Some(&0));
    }

    #[test]
    fn bad_lines() {
        let e = parse(fixture!("bad-single-match.txt")).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("grep -H"), "{e}");
        let e = parse(fixture!("bad-value.txt")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: NUMA node 'zero' of 0000:b5:00.0 is not an integer"
        );
        assert!(parse("/sys/bus/pci/devices/0000:b5:00/numa_node:0\n").is_err());
        assert!(parse("/sys/bus/pci/devices/0000:b5:00.0/numa_node:--1\n").is_err());
        assert!(parse("/sys/bus/pci/devices/0000:b5:00.0/numa_node:99999999999\n").is_err());
    }
}
