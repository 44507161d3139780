//! HMAT: each node's initiator, and the latency and bandwidth between them,
//! as the kernel shows them (`access0/initiators/`). The kernel shows a
//! node's values to its own initiator only; entries between other pairs
//! are in the ACPI table, not in sysfs, and are not checked.

use super::not_captured;
use crate::capture;
use crate::expect::Expected;
use crate::observe::Observed;
use crate::report::Check;

pub(super) fn check(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    let Some(h) = &e.hmat else { return };
    for n in &h.nodes {
        let (t, i) = (n.target, n.initiator);
        let got = o
            .hmat
            .as_ref()
            .map(|f| f.nodes.get(&t).cloned().unwrap_or_default());
        // Initiator.
        let id = format!("hmat.node{t}.initiator");
        let want = format!("node {t}'s initiator is node {i}");
        match &got {
            None => out.push(Check::skip(id, want, not_captured(&capture::HMAT))),
            Some(a) => {
                let ok = a.initiators == [i];
                let seen = if a.initiators.is_empty() {
                    "no initiator".to_string()
                } else {
                    format!(
                        "initiators {}",
                        a.initiators
                            .iter()
                            .map(|x| format!("node {x}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                out.push(Check::judge(
                    id,
                    ok,
                    want,
                    seen,
                    if ok {
                        format!("node {t}'s memory is nearest to node {i}'s CPUs")
                    } else {
                        format!("node {t}'s initiator is not node {i}")
                    },
                ));
            }
        }
        // What the kernel shows, as (read, write), for latency and bandwidth.
        let rows = [
            (
                "latency",
                "ns",
                n.latency_ns,
                got.as_ref().map(|a| (a.read_latency, a.write_latency)),
            ),
            (
                "bandwidth",
                "MB/s",
                n.bandwidth_mib_s,
                got.as_ref().map(|a| (a.read_bandwidth, a.write_bandwidth)),
            ),
        ];
        for (what, unit, want, seen) in rows {
            let Some(value) = want.map(u64::from) else {
                continue;
            };
            let id = format!("hmat.node{i}.node{t}.{what}");
            let want = format!("read and write {what} {value} {unit}");
            let Some((r, w)) = seen else {
                out.push(Check::skip(id, want, not_captured(&capture::HMAT)));
                continue;
            };
            let ok = r == Some(value) && w == Some(value);
            let show = |x: Option<u64>| x.map(|v| v.to_string()).unwrap_or_else(|| "none".into());
            out.push(Check::judge(
                id,
                ok,
                want,
                format!("read {} / write {}", show(r), show(w)),
                if ok {
                    format!("the {what} from node {i} to node {t} is the profile's")
                } else {
                    format!("the {what} from node {i} to node {t} differs from the profile's")
                },
            ));
        }
    }
}
