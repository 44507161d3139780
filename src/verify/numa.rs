//! NUMA: nodes, their CPUs and memory, the distance matrix (`numactl --hardware`).

use super::{memory_floor_mib, not_captured};
use crate::capture;
use crate::expect::Expected;
use crate::observe::Observed;
use crate::report::Check;

fn cpus_words(cpus: &crate::model::CpuSet) -> String {
    if cpus.is_empty() {
        "no CPUs (memory only)".to_string()
    } else {
        format!("CPUs {cpus}")
    }
}

pub(super) fn check(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    let Some(n) = &o.numactl else {
        out.push(Check::skip(
            "numa.nodes",
            format!("{} nodes", e.nodes.len()),
            not_captured(&capture::NUMACTL),
        ));
        for node in &e.nodes {
            out.push(Check::skip(
                format!("numa.node{}.cpus", node.id),
                cpus_words(&node.cpus),
                not_captured(&capture::NUMACTL),
            ));
            out.push(Check::skip(
                format!("numa.node{}.memory", node.id),
                format!("{}", node.memory),
                not_captured(&capture::NUMACTL),
            ));
        }
        out.push(Check::skip(
            "numa.distances",
            "distance matrix",
            not_captured(&capture::NUMACTL),
        ));
        return;
    };
    let seen = if n.numa_available { n.nodes.len() } else { 0 };
    out.push(Check::judge(
        "numa.nodes",
        seen == e.nodes.len(),
        format!("{} nodes", e.nodes.len()),
        format!("{seen} nodes"),
        if seen == e.nodes.len() {
            "the guest has the NUMA nodes asked for".into()
        } else {
            format!(
                "the guest has {seen} NUMA nodes, the profile asks for {}",
                e.nodes.len()
            )
        },
    ));
    for node in &e.nodes {
        let got = n.node(node.id);
        let cpus_seen = got
            .map(|g| {
                if g.cpus.is_empty() {
                    "no CPUs".into()
                } else {
                    format!("CPUs {}", g.cpus)
                }
            })
            .unwrap_or_else(|| "no such node".into());
        let ok = got.is_some_and(|g| g.cpus == node.cpus);
        out.push(Check::judge(
            format!("numa.node{}.cpus", node.id),
            ok,
            cpus_words(&node.cpus),
            cpus_seen,
            if ok {
                format!("node {} has its CPUs", node.id)
            } else {
                format!("node {} does not have the CPUs asked for", node.id)
            },
        ));
        let floor = memory_floor_mib(node.memory);
        let size = got.and_then(|g| g.size_mb);
        let ok = size.is_some_and(|s| s >= floor && s <= node.memory.mib());
        out.push(Check::judge(
            format!("numa.node{}.memory", node.id),
            ok,
            format!(
                "{} MB configured ({}..={} MB usable)",
                node.memory.mib(),
                floor,
                node.memory.mib()
            ),
            size.map(|s| format!("{s} MB"))
                .unwrap_or_else(|| "no size".into()),
            if ok {
                format!("node {} has its memory", node.id)
            } else {
                format!("node {} does not have the memory asked for", node.id)
            },
        ));
    }
    match &n.distances {
        Some(m) => {
            let ids: Vec<_> = e.nodes.iter().map(|x| x.id).collect();
            let mut bad = Vec::new();
            for (i, a) in ids.iter().enumerate() {
                for (j, b) in ids.iter().enumerate() {
                    let want = e.distances.get(i).and_then(|r| r.get(j)).copied();
                    let got = m.get(*a, *b);
                    if want != got {
                        bad.push(format!(
                            "{a}->{b}: {}",
                            got.map(|g| g.to_string())
                                .unwrap_or_else(|| "missing".into())
                        ));
                    }
                }
            }
            let fmt = |rows: &Vec<Vec<u32>>| {
                rows.iter()
                    .map(|r| {
                        r.iter()
                            .map(|v| v.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            out.push(Check::judge(
                "numa.distances",
                bad.is_empty(),
                fmt(&e.distances),
                if bad.is_empty() {
                    fmt(&m.rows)
                } else {
                    format!("{} (differs at {})", fmt(&m.rows), bad.join(", "))
                },
                if bad.is_empty() {
                    "the distance matrix matches".to_string()
                } else {
                    "the distance matrix differs".to_string()
                },
            ));
        }
        None => out.push(Check::skip(
            "numa.distances",
            "distance matrix",
            format!("{} has no distance table", capture::NUMACTL.file),
        )),
    }
}
