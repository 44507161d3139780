//! `[cpu]`: sockets x dies x cores x threads = vcpus, and a core's threads in one node.

use super::*;
use crate::model::CpuTopology;

pub(super) fn check_cpu(
    file: &ProfileFile,
    vcpus_ok: bool,
    nodes: &[Node],
    errs: &mut Errors,
) -> Option<CpuTopology> {
    let c = file.cpu.as_ref()?;
    let topo = CpuTopology {
        sockets: c.sockets,
        dies: c.dies.unwrap_or(1),
        cores: c.cores,
        threads: c.threads.unwrap_or(1),
    };
    let mut ok = true;
    for (name, value) in [
        ("sockets", topo.sockets),
        ("dies", topo.dies),
        ("cores", topo.cores),
        ("threads", topo.threads),
    ] {
        if !(1..=MAX_VCPUS).contains(&value) {
            errs.push(
                format!("cpu.{name}"),
                Problem::OutOfRange {
                    value: value.into(),
                    min: 1,
                    max: MAX_VCPUS.into(),
                },
            );
            ok = false;
        }
    }
    if !ok || !vcpus_ok {
        return None;
    }
    if topo.product() != u64::from(file.vcpus) {
        errs.push(
            "cpu",
            Problem::CpuProduct {
                sockets: topo.sockets,
                dies: topo.dies,
                cores: topo.cores,
                threads: topo.threads,
                product: topo.product(),
                vcpus: file.vcpus,
            },
        );
        return None;
    }
    // A core's threads in one node, as on every real machine (said once,
    // at the first of the two nodes).
    if topo.threads > 1 {
        let node_of = |cpu: u32| nodes.iter().position(|n| n.cpus.contains(cpu));
        for (i, n) in nodes.iter().enumerate() {
            let split = n.cpus.iter().find_map(|cpu| {
                topo.siblings(cpu)
                    .iter()
                    .find_map(|s| node_of(s).filter(|&o| o > i).map(|o| (cpu, s, o)))
            });
            if let Some((cpu, sibling, other)) = split {
                errs.push(
                    format!("node[{i}].cpus"),
                    Problem::CoreSplit {
                        cpu,
                        sibling,
                        other,
                    },
                );
            }
        }
    }
    Some(topo)
}
