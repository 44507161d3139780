//! `[tuning]`: vCPU and emulator pinning, memory policy, host huge pages.
//! Host CPUs and nodes are only read here; whether the host has them is
//! decided before a run, from the host's facts.

use std::collections::BTreeMap;

use super::*;
use crate::front::wire::TuningFile;
use crate::model::{NodeSet, NumaMode, NumaPolicy, Tuning};

fn mode(s: &str) -> Option<NumaMode> {
    NumaMode::ALL.into_iter().find(|m| m.name() == s)
}

fn policy(field: &str, mode_s: &str, nodeset: &str, errs: &mut Errors) -> Option<NumaPolicy> {
    let m = mode(mode_s);
    if m.is_none() {
        errs.push(
            format!("{field}.mode"),
            Problem::NumaMode(mode_s.to_string()),
        );
    }
    let set = match nodeset.parse::<NodeSet>() {
        Ok(s) => Some(s),
        Err(e) => {
            errs.push(format!("{field}.nodeset"), Problem::BadNodeset(e.0));
            None
        }
    };
    let (m, set) = (m?, set?);
    if m == NumaMode::Preferred && set.len() != 1 {
        errs.push(
            format!("{field}.nodeset"),
            Problem::PreferredOneNode { count: set.len() },
        );
        return None;
    }
    Some(NumaPolicy {
        mode: m,
        nodeset: set,
    })
}

pub(super) fn check_tuning(
    t: &TuningFile,
    vcpus: u32,
    nodes: &[Node],
    errs: &mut Errors,
) -> Tuning {
    let mut out = Tuning::default();
    let mut pinned_by: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, p) in t.vcpupin.iter().enumerate() {
        let f = |s: &str| format!("tuning.vcpupin[{i}].{s}");
        let host = match p.cpus.parse::<CpuSet>() {
            Ok(c) => Some(c),
            Err(e) => {
                errs.push(f("cpus"), Problem::BadCpuset(e.0));
                None
            }
        };
        let set = match p.vcpus.parse::<CpuSet>() {
            Ok(s) => s,
            Err(e) => {
                errs.push(f("vcpus"), Problem::BadCpuset(e.0));
                continue;
            }
        };
        for vcpu in set.iter() {
            if vcpu >= vcpus {
                errs.push(f("vcpus"), Problem::CpuBeyondVcpus { cpu: vcpu, vcpus });
                break;
            }
            if let Some(&other) = pinned_by.get(&vcpu) {
                errs.push(f("vcpus"), Problem::VcpuPinnedTwice { vcpu, other });
                break;
            }
            pinned_by.insert(vcpu, i);
            if let Some(h) = &host {
                out.vcpupin.insert(vcpu, h.clone());
            }
        }
    }
    if let Some(e) = &t.emulatorpin {
        match e.parse::<CpuSet>() {
            Ok(c) => out.emulatorpin = Some(c),
            Err(err) => errs.push("tuning.emulatorpin", Problem::BadCpuset(err.0)),
        }
    }
    if let Some(n) = &t.numatune {
        out.numatune = policy("tuning.numatune", &n.mode, &n.nodeset, errs);
    }
    let mut cell_field: BTreeMap<(u32, &str), String> = BTreeMap::new();
    let mut cell_ok = |field: &str, what: &'static str, cell: u32, errs: &mut Errors| -> bool {
        if cell as usize >= nodes.len() {
            if !nodes.is_empty() {
                errs.push(
                    format!("{field}.cell"),
                    Problem::UnknownNode {
                        node: cell,
                        nodes: nodes.len(),
                    },
                );
            }
            return false;
        }
        if let Some(other) = cell_field.get(&(cell, what)) {
            errs.push(
                format!("{field}.cell"),
                Problem::CellTwice {
                    cell,
                    other: other.clone(),
                },
            );
            return false;
        }
        cell_field.insert((cell, what), field.to_string());
        true
    };
    for (i, m) in t.memnode.iter().enumerate() {
        let field = format!("tuning.memnode[{i}]");
        let ok = cell_ok(&field, "memnode", m.cell, errs);
        let p = policy(&field, &m.mode, &m.nodeset, errs);
        if let (true, Some(p)) = (ok, p) {
            out.memnodes.insert(NodeId(m.cell), p);
        }
    }
    for (i, h) in t.hugepages.iter().enumerate() {
        let field = format!("tuning.hugepages[{i}]");
        let ok = cell_ok(&field, "hugepages", h.cell, errs);
        let size = match h.size.parse::<HugePageSize>() {
            Ok(s) => s,
            Err(e) => {
                errs.push(format!("{field}.size"), Problem::BadHugepageSize(e.0));
                continue;
            }
        };
        if !ok {
            continue;
        }
        let memory = nodes[h.cell as usize].memory;
        if memory.kib() % size.kib() != 0 {
            errs.push(
                format!("{field}.size"),
                Problem::MemoryNotPageMultiple { memory, size },
            );
            continue;
        }
        out.hugepages.insert(NodeId(h.cell), size);
    }
    out
}
