//! CPU topology: sockets, dies, cores, threads and each CPU's place and SMT
//! siblings (sysfs `topology/`), and whole cores per node. Only for
//! profiles with `[cpu]`.
//!
//! `physical_package_id` is the socket's number on every kernel; `die_id`
//! and `core_id` are numbered differently by different kernels (Linux 6.9
//! and later number dies across packages), so they are checked as
//! groupings: the CPUs sharing a CPU's die (or core) id must be exactly
//! those of its die (or core).

use std::collections::{BTreeMap, BTreeSet};

use super::not_captured;
use crate::capture;
use crate::expect::{Expected, ExpectedCpu};
use crate::model::CpuSet;
use crate::observe::cpu_topology::CpuTopologyFacts;
use crate::observe::Observed;
use crate::report::Check;

pub(super) fn check(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    let Some(c) = &e.cpu else { return };
    let Some(f) = &o.cpu_topology else {
        let why = not_captured(&capture::CPU_TOPOLOGY);
        for id in [
            "cpu.online",
            "cpu.sockets",
            "cpu.dies",
            "cpu.cores",
            "cpu.threads",
        ] {
            out.push(Check::skip(id, summary(c), why.clone()));
        }
        for v in &c.cpus {
            for what in ["socket", "die", "core", "siblings"] {
                out.push(Check::skip(
                    format!("cpu.cpu{}.{what}", v.id),
                    format!("CPU {} in socket {}", v.id, v.socket),
                    why.clone(),
                ));
            }
        }
        for n in &c.whole_core_nodes {
            out.push(Check::skip(
                format!("cpu.node{n}.whole_cores"),
                "whole cores",
                why.clone(),
            ));
        }
        return;
    };
    counts(c, f, out);
    for v in &c.cpus {
        let got = f.cpus.get(&v.id);
        let missing = || format!("CPU {} has no topology in sysfs (offline or absent)", v.id);
        // Socket: the package id itself.
        let pkg = got.and_then(|g| g.package);
        out.push(Check::judge(
            format!("cpu.cpu{}.socket", v.id),
            pkg == Some(v.socket),
            format!("physical_package_id {}", v.socket),
            pkg.map(|p| format!("physical_package_id {p}"))
                .unwrap_or_else(missing),
            if pkg == Some(v.socket) {
                format!("CPU {} is in socket {}", v.id, v.socket)
            } else {
                format!("CPU {} is not in socket {}", v.id, v.socket)
            },
        ));
        // Die and core: the CPUs that share this CPU's id.
        for (what, want, key) in [
            ("die", &v.die_cpus, Level::Die),
            ("core", &v.siblings, Level::Core),
        ] {
            let id = format!("cpu.cpu{}.{what}", v.id);
            let expected = format!("a {what}_id shared with CPUs {want} only");
            match sharing(f, v.id, key) {
                None => out.push(Check::judge(
                    id,
                    false,
                    expected,
                    missing(),
                    format!("CPU {} shows no {what}_id", v.id),
                )),
                Some((value, mates)) => {
                    let ok = &mates == want;
                    out.push(Check::judge(
                        id,
                        ok,
                        expected,
                        format!("{what}_id {value}, shared with CPUs {mates}"),
                        if ok {
                            format!("CPU {} is in the {what} the profile gives it", v.id)
                        } else {
                            format!("CPU {}'s {what} holds other CPUs than the profile's", v.id)
                        },
                    ));
                }
            }
        }
        let sib = got.and_then(|g| g.siblings.clone());
        let ok = sib.as_ref() == Some(&v.siblings);
        out.push(Check::judge(
            format!("cpu.cpu{}.siblings", v.id),
            ok,
            format!("thread_siblings_list {}", v.siblings),
            sib.map(|s| format!("thread_siblings_list {s}"))
                .unwrap_or_else(missing),
            if ok {
                format!("CPU {} has its SMT siblings", v.id)
            } else {
                format!("CPU {}'s SMT siblings differ from the profile's", v.id)
            },
        ));
    }
    whole_cores(c, f, o, out);
}

fn summary(c: &ExpectedCpu) -> String {
    format!(
        "{} sockets x {} dies x {} cores x {} threads",
        c.sockets, c.dies, c.cores, c.threads
    )
}

#[derive(Clone, Copy)]
enum Level {
    Die,
    Core,
}

/// The id of CPU `cpu` at `level` and the CPUs that share it (within its
/// package, and die for a core).
fn sharing(f: &CpuTopologyFacts, cpu: u32, level: Level) -> Option<(u32, CpuSet)> {
    let me = f.cpus.get(&cpu)?;
    let key = |t: &crate::observe::cpu_topology::CpuTopo| -> Option<(u32, u32, Option<u32>)> {
        Some(match level {
            Level::Die => (t.package?, t.die?, None),
            Level::Core => (t.package?, t.die.unwrap_or(0), Some(t.core?)),
        })
    };
    let mine = key(me)?;
    let mates = CpuSet::from_cpus(
        f.cpus
            .iter()
            .filter(|(_, t)| key(t) == Some(mine))
            .map(|(id, _)| *id),
    );
    let value = match level {
        Level::Die => mine.1,
        Level::Core => mine.2.unwrap_or(0),
    };
    Some((value, mates))
}

fn counts(c: &ExpectedCpu, f: &CpuTopologyFacts, out: &mut Vec<Check>) {
    let n = f.cpus.len();
    let want_n = c.cpus.len();
    out.push(Check::judge(
        "cpu.online",
        n == want_n,
        format!("{want_n} CPUs with a topology"),
        format!("{n} CPUs with a topology"),
        if n == want_n {
            "every vCPU is online with its topology".to_string()
        } else {
            format!("{n} of {want_n} vCPUs show a topology")
        },
    ));
    let packages: BTreeSet<u32> = f.cpus.values().filter_map(|t| t.package).collect();
    let dies: BTreeSet<(u32, u32)> = f
        .cpus
        .values()
        .filter_map(|t| Some((t.package?, t.die.unwrap_or(0))))
        .collect();
    let cores: BTreeSet<(u32, u32, u32)> = f
        .cpus
        .values()
        .filter_map(|t| Some((t.package?, t.die.unwrap_or(0), t.core?)))
        .collect();
    let mut threads: BTreeMap<usize, usize> = BTreeMap::new();
    for t in f.cpus.values() {
        *threads
            .entry(t.siblings.as_ref().map_or(0, CpuSet::len))
            .or_default() += 1;
    }
    // Totals: sockets, dies across sockets, cores across dies.
    let (sockets, dies_all, cores_all) = (
        c.sockets as usize,
        (c.sockets * c.dies) as usize,
        (c.sockets * c.dies * c.cores) as usize,
    );
    let rows = [
        (
            "cpu.sockets",
            format!("{sockets} sockets"),
            sockets,
            packages.len(),
            "sockets",
        ),
        (
            "cpu.dies",
            format!("{} dies per socket, {dies_all} in all", c.dies),
            dies_all,
            dies.len(),
            "dies",
        ),
        (
            "cpu.cores",
            format!("{} cores per die, {cores_all} in all", c.cores),
            cores_all,
            cores.len(),
            "cores",
        ),
    ];
    for (id, expected, want, got, what) in rows {
        let ok = want == got;
        out.push(Check::judge(
            id,
            ok,
            expected,
            format!("{got} {what} in all"),
            if ok {
                format!("the guest has the {what} asked for")
            } else {
                format!("the guest has {got} {what}, not {want}")
            },
        ));
    }
    let want = c.threads as usize;
    let ok = threads.len() == 1 && threads.contains_key(&want);
    let seen = threads
        .iter()
        .map(|(k, v)| format!("{v} CPUs with {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    out.push(Check::judge(
        "cpu.threads",
        ok,
        format!("{want} threads per core"),
        if seen.is_empty() {
            "no CPUs".into()
        } else {
            format!("{seen} threads per core")
        },
        if ok {
            "every core has the threads asked for".to_string()
        } else {
            format!("not every core has {want} threads")
        },
    ));
}

fn whole_cores(c: &ExpectedCpu, f: &CpuTopologyFacts, o: &Observed, out: &mut Vec<Check>) {
    for node in &c.whole_core_nodes {
        let id = format!("cpu.node{node}.whole_cores");
        let want = "each CPU's SMT siblings in the same node";
        let Some(n) = &o.numactl else {
            out.push(Check::skip(id, want, not_captured(&capture::NUMACTL)));
            continue;
        };
        let Some(cpus) = n.node(*node).map(|x| &x.cpus) else {
            out.push(Check::judge(
                id,
                false,
                want,
                format!("numactl shows no node {node}"),
                format!("node {node} is missing"),
            ));
            continue;
        };
        let strays: Vec<String> = cpus
            .iter()
            .filter_map(|cpu| {
                let sib = f.cpus.get(&cpu)?.siblings.as_ref()?;
                let out: Vec<String> = sib
                    .iter()
                    .filter(|s| !cpus.contains(*s))
                    .map(|s| s.to_string())
                    .collect();
                (!out.is_empty()).then(|| format!("CPU {cpu}'s sibling {}", out.join(", ")))
            })
            .collect();
        let ok = strays.is_empty();
        out.push(Check::judge(
            id,
            ok,
            want,
            if ok {
                format!("node {node}: CPUs {cpus}, whole cores")
            } else {
                format!("node {node}: {} outside it", strays.join("; "))
            },
            if ok {
                format!("node {node} holds whole cores")
            } else {
                format!("node {node} splits a core with another node")
            },
        ));
    }
}
