//! `[[expander]]`: nodes, bus numbers, root ports, and the placement of NICs behind them.

use super::*;

/// Places NIC instances on expanders and decides each expander's root-port
/// count and bus number.
///
/// `extra_root_ports` are the root ports on pcie-root that are not a NIC's
/// (a disk-image guest's disk, the shares): they take pcie-root slots and
/// buses like the NICs without a node.
pub(super) fn place(
    files: &[ExpanderFile],
    nics: &[Nic],
    node_count: usize,
    extra_root_ports: u32,
    other_root_slots: u32,
    errs: &mut Errors,
) -> Vec<Expander> {
    let mut expanders: Vec<Expander> = Vec::new();
    let mut explicit_bus: Vec<Option<u32>> = Vec::new();
    let mut explicit_ports: Vec<Option<u32>> = Vec::new();
    for (i, e) in files.iter().enumerate() {
        let f = |s: &str| format!("expander[{i}].{s}");
        if e.node as usize >= node_count {
            if node_count > 0 {
                errs.push(
                    f("node"),
                    Problem::UnknownNode {
                        node: e.node,
                        nodes: node_count,
                    },
                );
            }
            continue;
        }
        if let Some(b) = e.bus {
            if !(1..=254).contains(&b) {
                errs.push(
                    f("bus"),
                    Problem::OutOfRange {
                        value: b.into(),
                        min: 1,
                        max: 254,
                    },
                );
                continue;
            }
        }
        if let Some(rp) = e.root_ports {
            if rp > MAX_ROOT_PORTS {
                errs.push(
                    f("root_ports"),
                    Problem::OutOfRange {
                        value: rp.into(),
                        min: 0,
                        max: MAX_ROOT_PORTS.into(),
                    },
                );
                continue;
            }
        }
        expanders.push(Expander {
            origin: Origin::File(i),
            node: NodeId(e.node),
            bus: 0,
            root_ports: 0,
            nics: vec![],
        });
        explicit_bus.push(e.bus);
        explicit_ports.push(e.root_ports);
    }
    // A node with NICs and no expander gets one.
    let nic_nodes: BTreeSet<NodeId> = nics.iter().filter_map(|n| n.node).collect();
    for node in nic_nodes {
        if !files.iter().any(|e| e.node == node.0) {
            expanders.push(Expander {
                origin: Origin::Implicit,
                node,
                bus: 0,
                root_ports: 0,
                nics: vec![],
            });
            explicit_bus.push(None);
            explicit_ports.push(None);
        }
    }
    // Distribute each node's NICs over its expanders in order.
    for node in (0..node_count as u32).map(NodeId) {
        let mut pending: Vec<usize> = nics
            .iter()
            .enumerate()
            .filter(|(_, n)| n.node == Some(node))
            .map(|(i, _)| i)
            .collect();
        let devices = pending.len() as u32;
        let mut ports = 0;
        let mut last = None;
        for (k, x) in expanders
            .iter_mut()
            .enumerate()
            .filter(|(_, x)| x.node == node)
        {
            let cap = explicit_ports[k].unwrap_or(pending.len() as u32);
            let take = (cap as usize).min(pending.len());
            x.nics = pending.drain(..take).collect();
            x.root_ports = cap;
            ports += cap;
            last = Some(k);
        }
        if !pending.is_empty() {
            let field = match last.map(|k| expanders[k].origin) {
                Some(Origin::File(i)) => format!("expander[{i}].root_ports"),
                _ => "expander".to_string(),
            };
            errs.push(
                field,
                Problem::NodeOverfull {
                    node: node.0,
                    devices,
                    ports,
                },
            );
        }
    }
    for x in &expanders {
        if x.root_ports > MAX_ROOT_PORTS {
            let field = match x.origin {
                Origin::File(i) => format!("expander[{i}].root_ports"),
                Origin::Implicit => format!("nic (node {})", x.node),
            };
            errs.push(
                field,
                Problem::OutOfRange {
                    value: x.root_ports.into(),
                    min: 0,
                    max: MAX_ROOT_PORTS.into(),
                },
            );
        }
    }
    let unplaced = nics.iter().filter(|n| n.node.is_none()).count() as u32 + extra_root_ports;
    let slots = expanders.len() as u32 + unplaced + other_root_slots;
    if slots > PCIE_ROOT_SLOTS {
        errs.push(
            "expander",
            Problem::TooManyRootSlots {
                needed: slots,
                max: PCIE_ROOT_SLOTS,
            },
        );
    }
    // Bus numbers: pcie-root owns 0..=root_last; each expander N..=N+k.
    let root_last = unplaced;
    let field = |x: &Expander, what: &str| match x.origin {
        Origin::File(i) => format!("expander[{i}].{what}"),
        Origin::Implicit => format!("expander (implicit, node {})", x.node),
    };
    let mut taken: Vec<(u32, u32, usize)> = Vec::new();
    for (k, x) in expanders.iter_mut().enumerate() {
        let Some(b) = explicit_bus[k] else { continue };
        let last = b + x.root_ports;
        let idx = match x.origin {
            Origin::File(i) => i,
            Origin::Implicit => k,
        };
        if last > 255 {
            errs.push(field(x, "bus"), Problem::BusOverflow { first: b, last });
        } else if b <= root_last {
            errs.push(
                field(x, "bus"),
                Problem::BusBelowRoot {
                    bus: b,
                    needed: root_last,
                },
            );
        } else if let Some(&(of, ol, oi)) = taken.iter().find(|(f, l, _)| b <= *l && *f <= last) {
            errs.push(
                field(x, "bus"),
                Problem::BusCollision {
                    first: b,
                    last,
                    other: oi,
                    other_first: of,
                    other_last: ol,
                },
            );
        }
        taken.push((b, last, idx));
        x.bus = b as u8;
    }
    for (k, x) in expanders.iter_mut().enumerate() {
        if explicit_bus[k].is_some() {
            continue;
        }
        let need = x.root_ports;
        let mut n = root_last + 1;
        let found = loop {
            if n + need > 255 {
                break None;
            }
            match taken.iter().find(|(f, l, _)| n <= *l && *f <= n + need) {
                Some(&(_, l, _)) => n = l + 1,
                None => break Some(n),
            }
        };
        match found {
            Some(b) => {
                taken.push((b, b + need, k));
                x.bus = b as u8;
            }
            None => errs.push(field(x, "bus"), Problem::NoBusRoom { buses: need + 1 }),
        }
    }
    expanders
}
