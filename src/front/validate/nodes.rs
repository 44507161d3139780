//! `[[node]]`: ids, cpusets (empty for a memory-only node), memory,
//! distances, huge pages.

use std::collections::BTreeMap;

use super::*;

pub(super) fn check_nodes(file: &ProfileFile, vcpus_ok: bool, errs: &mut Errors) -> Vec<Node> {
    if file.node.is_empty() {
        errs.push("node", Problem::NoNodes);
        return Vec::new();
    }
    if file.node.len() > MAX_NODES {
        errs.push(
            "node",
            Problem::TooManyNodes {
                count: file.node.len(),
                max: MAX_NODES,
            },
        );
        return Vec::new();
    }
    let count = file.node.len();
    let mut nodes = Vec::new();
    let mut placed: Vec<(u32, usize)> = Vec::new();
    let mut cpusets_ok = true;
    let given_on = file.node.iter().position(|n| n.distances.is_some());
    for (i, n) in file.node.iter().enumerate() {
        let f = |s: &str| format!("node[{i}].{s}");
        if let Some(id) = n.id {
            if id as usize != i {
                errs.push(f("id"), Problem::NodeIdOrder { id, position: i });
            }
        }
        let parsed = if n.cpus.trim().is_empty() {
            // A memory-only node.
            Ok(CpuSet::default())
        } else {
            n.cpus.parse::<CpuSet>()
        };
        let cpus = match parsed {
            Ok(c) => {
                for cpu in c.iter() {
                    if vcpus_ok && cpu >= file.vcpus {
                        errs.push(
                            f("cpus"),
                            Problem::CpuBeyondVcpus {
                                cpu,
                                vcpus: file.vcpus,
                            },
                        );
                        break;
                    }
                    if let Some(&(_, other)) = placed.iter().find(|(c2, _)| *c2 == cpu) {
                        errs.push(f("cpus"), Problem::CpuOverlap { cpu, other });
                        break;
                    }
                }
                placed.extend(c.iter().map(|cpu| (cpu, i)));
                c
            }
            Err(e) => {
                cpusets_ok = false;
                errs.push(f("cpus"), Problem::BadCpuset(e.0));
                CpuSet::default()
            }
        };
        let memory = match n.memory.parse::<Bytes>() {
            Ok(m) if m < MIN_NODE_MEMORY => {
                errs.push(
                    f("memory"),
                    Problem::NodeMemoryTooSmall {
                        size: m,
                        min: MIN_NODE_MEMORY,
                    },
                );
                m
            }
            Ok(m) => m,
            Err(e) => {
                errs.push(f("memory"), Problem::BadSize(e.0));
                Bytes::default()
            }
        };
        match (&n.distances, given_on) {
            (None, Some(g)) => errs.push(f("distances"), Problem::DistancesMissing { given_on: g }),
            (Some(row), _) if row.len() != count => errs.push(
                f("distances"),
                Problem::DistancesLength {
                    len: row.len(),
                    nodes: count,
                },
            ),
            (Some(row), _) => {
                for (j, &value) in row.iter().enumerate() {
                    if j == i && value != 10 {
                        errs.push(f("distances"), Problem::DistanceSelf { value });
                    } else if j != i && !(11..=255).contains(&value) {
                        errs.push(f("distances"), Problem::DistanceRange { value, to: j });
                    } else if j < i {
                        let back = file
                            .node
                            .get(j)
                            .and_then(|o| o.distances.as_ref())
                            .and_then(|r| r.get(i));
                        if let Some(&back) = back {
                            if back != value {
                                errs.push(
                                    f("distances"),
                                    Problem::DistanceAsymmetric { to: j, value, back },
                                );
                            }
                        }
                    }
                }
            }
            (None, None) => {}
        }
        let hugepages = n
            .hugepages
            .as_ref()
            .map(|h| check_hugepages(h, memory, &f("hugepages"), errs))
            .unwrap_or_default();
        nodes.push(Node {
            id: NodeId(i as u32),
            cpus,
            memory,
            distances: n.distances.clone(),
            hugepages,
        });
    }
    if cpusets_ok && nodes.iter().all(Node::memory_only) {
        errs.push("node", Problem::NoCpuNode);
    } else if vcpus_ok && cpusets_ok {
        let all: BTreeSet<u32> = placed.iter().map(|(c, _)| *c).collect();
        let missing = CpuSet::from_cpus((0..file.vcpus).filter(|c| !all.contains(c)));
        if !missing.is_empty() {
            errs.push(
                "node",
                Problem::CpusUnplaced {
                    cpus: missing.to_string(),
                },
            );
        }
    }
    nodes
}

/// A node's huge pages: known sizes, and room left for the kernel.
fn check_hugepages(
    given: &BTreeMap<String, u64>,
    memory: Bytes,
    field: &str,
    errs: &mut Errors,
) -> BTreeMap<HugePageSize, u64> {
    let mut out = BTreeMap::new();
    for (size, &count) in given {
        match size.parse::<HugePageSize>() {
            Ok(s) => {
                out.insert(s, count);
            }
            Err(e) => errs.push(format!("{field}.{size}"), Problem::BadHugepageSize(e.0)),
        }
    }
    if memory == Bytes::default() {
        return out;
    }
    let gigantic = out.get(&HugePageSize::G1).copied().unwrap_or(0);
    let need = Bytes::from_kib(
        gigantic
            .saturating_mul(HugePageSize::G1.kib())
            .saturating_add(GIGANTIC_KEEP.kib()),
    );
    if gigantic > 0 && need > memory {
        errs.push(
            format!("{field}.1G"),
            Problem::GiganticDontFit {
                count: gigantic,
                need,
                memory,
            },
        );
        return out;
    }
    let total = out.iter().fold(0u64, |acc, (s, n)| {
        acc.saturating_add(n.saturating_mul(s.kib()))
    });
    let left = memory.kib().saturating_sub(total);
    if total > 0 && left < HUGEPAGES_KEEP.kib() {
        errs.push(
            field.to_string(),
            Problem::HugepagesDontFit {
                pages: Bytes::from_kib(total.min(crate::model::BYTES_MAX_KIB)),
                left: Bytes::from_kib(left),
                memory,
                keep: HUGEPAGES_KEEP,
            },
        );
    }
    out
}
