//! `[[interconnect]]`: HMAT latencies and bandwidths between nodes.

use super::*;
use crate::front::wire::InterconnectFile;
use crate::model::{Interconnect, MAX_HMAT_VALUE};

pub(super) fn check_interconnects(
    entries: &[InterconnectFile],
    nodes: &[Node],
    errs: &mut Errors,
) -> Vec<Interconnect> {
    let mut out: Vec<(usize, Interconnect)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let f = |s: &str| format!("interconnect[{i}].{s}");
        let mut ok = true;
        for (name, node) in [("initiator", e.initiator), ("target", e.target)] {
            if node as usize >= nodes.len() {
                if !nodes.is_empty() {
                    errs.push(
                        f(name),
                        Problem::UnknownNode {
                            node,
                            nodes: nodes.len(),
                        },
                    );
                }
                ok = false;
            }
        }
        if let Some(n) = nodes.get(e.initiator as usize) {
            if n.memory_only() {
                errs.push(
                    f("initiator"),
                    Problem::InitiatorWithoutCpus { node: e.initiator },
                );
                ok = false;
            }
        }
        for (name, value) in [
            ("latency_ns", e.latency_ns),
            ("bandwidth_mib_s", e.bandwidth_mib_s),
        ] {
            if let Some(v) = value {
                if !(1..=MAX_HMAT_VALUE).contains(&v) {
                    errs.push(
                        f(name),
                        Problem::OutOfRange {
                            value: v.into(),
                            min: 1,
                            max: MAX_HMAT_VALUE.into(),
                        },
                    );
                    ok = false;
                }
            }
        }
        if e.latency_ns.is_none() && e.bandwidth_mib_s.is_none() {
            errs.push(format!("interconnect[{i}]"), Problem::InterconnectEmpty);
            ok = false;
        }
        let same = |a: &Interconnect| {
            (a.initiator.0, a.target.0) == (e.initiator, e.target)
                || (a.initiator.0, a.target.0) == (e.target, e.initiator)
        };
        if let Some((other, _)) = out.iter().find(|(_, a)| same(a)) {
            errs.push(
                format!("interconnect[{i}]"),
                Problem::InterconnectRepeated {
                    other: *other,
                    a: e.initiator.min(e.target),
                    b: e.initiator.max(e.target),
                },
            );
            ok = false;
        }
        if ok {
            out.push((
                i,
                Interconnect {
                    initiator: NodeId(e.initiator),
                    target: NodeId(e.target),
                    latency_ns: e.latency_ns,
                    bandwidth_mib_s: e.bandwidth_mib_s,
                },
            ));
        }
    }
    if !entries.is_empty() {
        for (i, n) in nodes.iter().enumerate() {
            let targeted = entries.iter().any(|e| e.target as usize == i);
            if n.memory_only() && !targeted {
                errs.push(
                    format!("node[{i}].cpus"),
                    Problem::NoInitiator { node: i as u32 },
                );
            }
        }
    }
    out.into_iter().map(|(_, c)| c).collect()
}
