//! `grep . /sys/devices/system/cpu/online /sys/devices/system/cpu/cpu[0-9]*/topology/...`:
//! each CPU's package, die, core and SMT siblings.
//!
//! grep prefixes each value with its file (`/sys/devices/system/cpu/cpu17/topology/core_id:3`).
//! `die_id` is missing on kernels before 5.2 (grep then says `No such file
//! or directory`, skipped here); a CPU that is offline has no `topology/`
//! at all. Other files under `/sys/devices/system/cpu` are ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::text;
use super::ParseError;
use crate::model::CpuSet;

/// What sysfs showed of the CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTopologyFacts {
    /// `/sys/devices/system/cpu/online`, when captured.
    pub online: Option<CpuSet>,
    /// Each CPU that has a `topology/` directory, by number.
    pub cpus: BTreeMap<u32, CpuTopo>,
}

/// One CPU's `topology/` files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTopo {
    /// `physical_package_id`.
    pub package: Option<u32>,
    /// `die_id`.
    pub die: Option<u32>,
    /// `core_id`.
    pub core: Option<u32>,
    /// `thread_siblings_list`.
    pub siblings: Option<CpuSet>,
}

/// Parses the grep output.
///
/// # Errors
/// A [`ParseError`] naming the line for a line that is not `<file>:<value>`
/// under `/sys/devices/system/cpu`, or a value that is not a number (a CPU
/// list for `thread_siblings_list` and `online`).
pub fn parse(input: &str) -> Result<CpuTopologyFacts, ParseError> {
    let mut out = CpuTopologyFacts::default();
    for (n, line) in text::lines(input) {
        let t = line.trim();
        if t.is_empty() || text::is_kernel_line(line) || t.starts_with("grep:") {
            continue;
        }
        let fail = |msg: String| ParseError::at(n, msg);
        let Some((path, value)) = t.split_once(':') else {
            return Err(fail(format!(
                "expected '<file>:<value>', found '{}'",
                text::snippet(t)
            )));
        };
        let Some(rest) = path.strip_prefix("/sys/devices/system/cpu/") else {
            return Err(fail(format!(
                "'{}' is not a file under /sys/devices/system/cpu",
                text::snippet(path)
            )));
        };
        let value = value.trim();
        let cpuset = || {
            value
                .parse::<CpuSet>()
                .map_err(|e| fail(format!("{}: {}", text::snippet(path), e.0)))
        };
        if rest == "online" {
            out.online = Some(cpuset()?);
            continue;
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let [cpu, "topology", attr] = parts.as_slice() else {
            continue;
        };
        let Some(id) = cpu.strip_prefix("cpu").and_then(text::decimal::<u32>) else {
            continue;
        };
        let number = || {
            text::decimal::<u32>(value).ok_or_else(|| {
                fail(format!(
                    "{}: '{}' is not a number",
                    text::snippet(path),
                    text::snippet(value)
                ))
            })
        };
        let entry = out.cpus.entry(id).or_default();
        match *attr {
            "physical_package_id" => entry.package = Some(number()?),
            "die_id" => entry.die = Some(number()?),
            "core_id" => entry.core = Some(number()?),
            "thread_siblings_list" => entry.siblings = Some(cpuset()?),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/observe/cpu_topology/", $name))
        };
    }

    #[test]
    fn smt_guest_on_linux_6_12() {
        let f = parse(fixture!("smt-6.12.txt")).unwrap();
        assert_eq!(f.cpus.len(), 8);
        let c5 = &f.cpus[&5];
        assert_eq!((c5.package, c5.die, c5.core), (Some(1), Some(1), Some(0)));
        assert_eq!(c5.siblings.as_ref().unwrap().to_string(), "4-5");
    }

    /// Linux 6.1 under TCG (QEMU's AMD-flavoured CPU without topoext): the
    /// sockets are right, every CPU is a core of its own.
    #[test]
    fn no_smt_seen_by_linux_6_1_under_tcg() {
        let f = parse(fixture!("cern-6.1-tcg-no-smt.txt")).unwrap();
        assert_eq!(f.online.as_ref().unwrap().to_string(), "0-31");
        assert_eq!(f.cpus.len(), 32);
        let c27 = &f.cpus[&27];
        assert_eq!((c27.package, c27.core), (Some(1), Some(11)));
        assert_eq!(c27.siblings.as_ref().unwrap().to_string(), "27");
    }

    /// Linux 6.1, two sockets of one core: die_id counts across packages.
    #[test]
    fn die_ids_across_packages() {
        let f = parse(fixture!("two-sockets-6.1.txt")).unwrap();
        assert_eq!(f.cpus[&1].package, Some(1));
        assert_eq!(f.cpus[&1].die, Some(1));
        assert_eq!(f.cpus[&1].core, Some(0));
    }

    #[test]
    fn odd_inputs() {
        let f = parse("grep: /sys/devices/system/cpu/cpu0/topology/die_id: No such file or directory\n/sys/devices/system/cpu/cpu0/topology/core_id:0\r\n").unwrap();
        assert_eq!(f.cpus[&0].core, Some(0));
        assert_eq!(f.cpus[&0].die, None);
        assert!(parse("").unwrap().cpus.is_empty());
        let e = parse("/sys/devices/system/cpu/cpu1/topology/core_id:x\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(parse("core_id 3\n").is_err());
        let f = parse("/sys/devices/system/cpu/online:0-3\n/sys/devices/system/cpu/cpu2/topology/core_cpus_list:2\n").unwrap();
        assert_eq!(f.online.unwrap().to_string(), "0-3");
    }
}
