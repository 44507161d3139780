//! `grep -E '^(Name|Cpus_allowed_list|Mems_allowed_list):' /proc/PID/task/*/status`,
//! read on the host for QEMU's PID: where each of QEMU's threads may run,
//! and which host nodes its memory may come from. That is where libvirt's
//! pinning and strict memory policy end up.
//!
//! Lines are `/proc/27737/task/27740/status:Name:\tCPU 1/TCG`. QEMU names a
//! vCPU thread `CPU <n>/TCG` (or `/KVM`); every other thread (the main
//! loop, `call_rcu`, the monitor's I/O thread, workers) is an emulator
//! thread for libvirt's `<emulatorpin>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::text;
use super::ParseError;
use crate::model::{CpuSet, NodeSet};

/// QEMU's threads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuThreads {
    /// QEMU's PID (the process in the paths).
    pub pid: Option<u32>,
    /// Every thread, by thread id.
    pub threads: BTreeMap<u32, QemuThread>,
}

/// One thread's `status` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuThread {
    /// `Name:` (the thread's comm).
    pub name: String,
    /// `Cpus_allowed_list:`.
    pub cpus_allowed: Option<CpuSet>,
    /// `Mems_allowed_list:`.
    pub mems_allowed: Option<NodeSet>,
}

impl QemuThread {
    /// The vCPU this thread runs, from its name (`CPU 3/TCG` -> 3).
    pub fn vcpu(&self) -> Option<u32> {
        let rest = self.name.strip_prefix("CPU ")?;
        let (n, _) = rest.split_once('/')?;
        text::decimal(n)
    }
}

impl QemuThreads {
    /// The thread of vCPU `n`.
    pub fn vcpu(&self, n: u32) -> Option<&QemuThread> {
        self.threads.values().find(|t| t.vcpu() == Some(n))
    }
    /// The threads that run no vCPU (libvirt's emulator threads).
    pub fn emulator(&self) -> impl Iterator<Item = (u32, &QemuThread)> {
        self.threads
            .iter()
            .filter(|(_, t)| t.vcpu().is_none())
            .map(|(id, t)| (*id, t))
    }
}

/// Parses the grep output.
///
/// # Errors
/// A [`ParseError`] naming the line for a line that is not
/// `/proc/<pid>/task/<tid>/status:<Field>:<value>`, or a CPU or node list
/// that cannot be read.
pub fn parse(input: &str) -> Result<QemuThreads, ParseError> {
    let mut out = QemuThreads::default();
    for (n, line) in text::lines(input) {
        if line.trim().is_empty() || line.starts_with("grep:") {
            continue;
        }
        let fail = |msg: String| ParseError::at(n, msg);
        let parsed = line.split_once(':').and_then(|(path, rest)| {
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            let ["proc", pid, "task", tid, "status"] = parts.as_slice() else {
                return None;
            };
            let (field, value) = rest.split_once(':')?;
            Some((
                text::decimal::<u32>(pid)?,
                text::decimal::<u32>(tid)?,
                field,
                value.trim(),
            ))
        });
        let Some((pid, tid, field, value)) = parsed else {
            return Err(fail(format!(
                "expected '/proc/<pid>/task/<tid>/status:<field>:<value>', found '{}'",
                text::snippet(line)
            )));
        };
        out.pid.get_or_insert(pid);
        let t = out.threads.entry(tid).or_default();
        match field {
            "Name" => t.name = value.to_string(),
            "Cpus_allowed_list" => {
                t.cpus_allowed =
                    Some(value.parse().map_err(|e: crate::model::TypeError| {
                        fail(format!("thread {tid}: {}", e.0))
                    })?)
            }
            "Mems_allowed_list" => {
                t.mems_allowed =
                    Some(value.parse().map_err(|e: crate::model::TypeError| {
                        fail(format!("thread {tid}: {}", e.0))
                    })?)
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_tcg_threads() {
        let q = parse(include_str!(
            "../../tests/fixtures/observe/host_threads/pinned-tcg.txt"
        ))
        .unwrap();
        assert_eq!(
            q.vcpu(1)
                .unwrap()
                .cpus_allowed
                .as_ref()
                .unwrap()
                .to_string(),
            "1"
        );
        assert!(q.emulator().count() >= 2);
        assert!(q
            .emulator()
            .all(|(_, t)| t.cpus_allowed.as_ref().unwrap().to_string() == "0-1"));
        assert_eq!(
            q.vcpu(0)
                .unwrap()
                .mems_allowed
                .as_ref()
                .unwrap()
                .to_string(),
            "0"
        );
    }

    #[test]
    fn odd_lines() {
        assert!(parse("").unwrap().threads.is_empty());
        assert!(parse("Name: qemu\n").is_err());
        assert!(parse("/proc/1/task/2/status:Cpus_allowed_list:\tx\n").is_err());
        let q = parse("/proc/1/task/2/status:Name:\tCPU 12/KVM\n").unwrap();
        assert_eq!(q.vcpu(12).map(|t| t.name.as_str()), Some("CPU 12/KVM"));
    }
}
