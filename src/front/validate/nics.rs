//! `[[nic]]`: models, nodes, counts, VFs.

use super::*;

pub(super) fn check_nics(entries: &[NicFile], node_count: usize, errs: &mut Errors) -> Vec<Nic> {
    let mut nics = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let f = |s: &str| format!("nic[{i}].{s}");
        let model = match e.model.as_str() {
            "e1000e" => Some(NicModel::E1000e),
            "igb" => Some(NicModel::Igb),
            "virtio" => Some(NicModel::Virtio),
            other => {
                errs.push(f("model"), Problem::NicModel(other.to_string()));
                None
            }
        };
        let node = match e.node {
            Some(n) if n as usize >= node_count => {
                if node_count > 0 {
                    errs.push(
                        f("node"),
                        Problem::UnknownNode {
                            node: n,
                            nodes: node_count,
                        },
                    );
                }
                None
            }
            other => other.map(NodeId),
        };
        let count = e.count.unwrap_or(1);
        if !(1..=MAX_NIC_COUNT).contains(&count) {
            errs.push(
                f("count"),
                Problem::OutOfRange {
                    value: count.into(),
                    min: 1,
                    max: MAX_NIC_COUNT.into(),
                },
            );
        }
        let vfs = match (e.vfs, model) {
            (Some(v), Some(m)) if m != NicModel::Igb => {
                errs.push(f("vfs"), Problem::VfsNotIgb(m.name().to_string()));
                v
            }
            (Some(v), _) if !(1..=MAX_VFS).contains(&v) => {
                errs.push(
                    f("vfs"),
                    Problem::OutOfRange {
                        value: v.into(),
                        min: 1,
                        max: MAX_VFS.into(),
                    },
                );
                v
            }
            (v, _) => v.unwrap_or(0),
        };
        let (Some(model), true) = (model, (1..=MAX_NIC_COUNT).contains(&count)) else {
            continue;
        };
        // An unknown node keeps the instance on no node; the error above stops the run.
        let node = if e.node.is_some() && node.is_none() {
            continue;
        } else {
            node
        };
        for _ in 0..count {
            nics.push(Nic {
                id: format!("nic{}", nics.len()),
                entry: i,
                model,
                node,
                vfs,
            });
        }
    }
    nics
}
