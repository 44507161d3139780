//! `numactl --hardware`: nodes, their CPUs and memory, and the distances.
//!
//! numactl prints `available: N nodes (list)`, then for each node
//! `node N cpus: ...` (nothing after the colon for a node without CPUs;
//! `0-3 (4)` with `--cpu-compress`), `node N size: M MB` and
//! `node N free: M MB` (`<not available>` when unknown), then
//! `node distances:`, a header `node   0   1   2` (columns 4 wide since
//! numactl 2.0.19) and one row per node `  0:  10  20  20`, or
//! `No distance information available.`. Without NUMA support it prints only
//! `No NUMA available on this system`. Nodes without memory may be left out.

use serde::{Deserialize, Serialize};

use super::text;
use super::ParseError;
use crate::model::{CpuSet, NodeId};

/// What `numactl --hardware` showed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaHardware {
    /// False when numactl printed `No NUMA available on this system`
    /// (then there are no nodes).
    pub numa_available: bool,
    /// The count from `available: N nodes`.
    pub node_count: usize,
    /// The node list from `available: N nodes (0-2)`.
    pub node_list: Vec<NodeId>,
    /// The nodes in printed order.
    pub nodes: Vec<NumaNode>,
    /// The distance table; `None` when numactl had none to print.
    pub distances: Option<DistanceMatrix>,
    /// Warnings from libnuma or numactl found in the capture.
    pub warnings: Vec<String>,
}

impl NumaHardware {
    /// The node with id `id`.
    pub fn node(&self, id: NodeId) -> Option<&NumaNode> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

/// One node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaNode {
    /// Node id.
    pub id: NodeId,
    /// Its CPUs (empty for a CPU-less node).
    pub cpus: CpuSet,
    /// Memory size in MB (MiB, rounded down); `None` when `<not available>`
    /// or not printed.
    pub size_mb: Option<u64>,
    /// Free memory in MB; `None` when `<not available>` or not printed.
    pub free_mb: Option<u64>,
}

/// The `node distances:` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistanceMatrix {
    /// The node of each row and column, in the order of the header.
    pub nodes: Vec<NodeId>,
    /// `rows[i][j]` is the distance from `nodes[i]` to `nodes[j]`.
    pub rows: Vec<Vec<u32>>,
}

impl DistanceMatrix {
    /// The distance from node `from` to node `to`.
    pub fn get(&self, from: NodeId, to: NodeId) -> Option<u32> {
        let i = self.nodes.iter().position(|n| *n == from)?;
        let j = self.nodes.iter().position(|n| *n == to)?;
        self.rows.get(i)?.get(j).copied()
    }
}

/// Parses `numactl --hardware` output.
///
/// # Errors
/// A [`ParseError`] naming the line for a line that cannot be read, a bad
/// CPU list, a distance row of the wrong length or for an unknown node, a
/// distance table with missing rows, and for output with neither an
/// `available:` line nor `No NUMA available`.
pub fn parse(input: &str) -> Result<NumaHardware, ParseError> {
    let mut hw = NumaHardware {
        numa_available: true,
        ..NumaHardware::default()
    };
    let mut saw_available = false;
    let mut saw_no_numa = false;
    // Where the distance table stands: header line seen (its line number).
    let mut dist_header: Option<usize> = None;
    let mut in_distances = false;
    let mut first_line = None;

    for (n, line) in text::lines(input) {
        let t = line.trim();
        if t.is_empty() || text::is_kernel_line(line) {
            continue;
        }
        first_line.get_or_insert(n);
        let cannot = || err(n, format!("cannot read '{}'", text::snippet(t)));
        if t.starts_with("No NUMA available") {
            saw_no_numa = true;
            continue;
        }
        if t.starts_with("libnuma:") || t.starts_with("numactl:") {
            hw.warnings.push(t.to_string());
            continue;
        }
        if let Some(rest) = t.strip_prefix("available:") {
            let (count, list) = parse_available(rest).ok_or_else(cannot)?;
            hw.node_count = count;
            hw.node_list = list;
            saw_available = true;
            continue;
        }
        if t == "node distances:" {
            in_distances = true;
            continue;
        }
        if t.starts_with("No distance information") {
            continue;
        }
        if in_distances && dist_header.is_none() {
            let rest = t.strip_prefix("node").ok_or_else(cannot)?;
            let mut nodes = Vec::new();
            for w in rest.split_whitespace() {
                nodes.push(NodeId(text::decimal(w).ok_or_else(cannot)?));
            }
            hw.distances = Some(DistanceMatrix {
                nodes,
                rows: Vec::new(),
            });
            dist_header = Some(n);
            continue;
        }
        if let (true, Some(m)) = (in_distances, hw.distances.as_mut()) {
            let (label, rest) = t.split_once(':').ok_or_else(cannot)?;
            let id = NodeId(text::decimal(label.trim()).ok_or_else(cannot)?);
            let expected = m.nodes.get(m.rows.len()).copied();
            if expected != Some(id) {
                let msg = match expected {
                    Some(e) => format!("distance row for node {id} where node {e} was expected"),
                    None => format!("distance row for node {id} beyond the header's nodes"),
                };
                return Err(err(n, msg));
            }
            let mut row = Vec::new();
            for w in rest.split_whitespace() {
                row.push(text::decimal::<u32>(w).ok_or_else(cannot)?);
            }
            if row.len() != m.nodes.len() {
                return Err(err(
                    n,
                    format!(
                        "distance row for node {id} has {} values for {} nodes",
                        row.len(),
                        m.nodes.len()
                    ),
                ));
            }
            m.rows.push(row);
            continue;
        }
        if let Some(rest) = t.strip_prefix("node ") {
            node_line(&mut hw, n, rest).ok_or_else(cannot)??;
            continue;
        }
        return Err(cannot());
    }

    if let (Some(h), Some(m)) = (dist_header, hw.distances.as_ref()) {
        if m.rows.len() != m.nodes.len() {
            return Err(err(
                h,
                format!(
                    "distance table has {} rows for {} nodes",
                    m.rows.len(),
                    m.nodes.len()
                ),
            ));
        }
    }
    if !saw_available {
        if saw_no_numa {
            return Ok(NumaHardware {
                numa_available: false,
                warnings: hw.warnings,
                ..NumaHardware::default()
            });
        }
        let msg = if first_line.is_none() {
            "no output".to_string()
        } else {
            "no 'available: N nodes' line".to_string()
        };
        return Err(err(first_line.unwrap_or(1), msg));
    }
    Ok(hw)
}

fn err(line: usize, message: String) -> ParseError {
    ParseError::at(line, message)
}

/// ` 3 nodes (0-2)`: the count and the node list.
fn parse_available(rest: &str) -> Option<(usize, Vec<NodeId>)> {
    let rest = rest.trim();
    let (count, rest) = rest.split_once(' ')?;
    let count: usize = text::decimal(count)?;
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("nodes")
        .or_else(|| rest.strip_prefix("node"))?
        .trim();
    let list = rest.strip_prefix('(')?.strip_suffix(')')?.trim();
    let nodes = if list.is_empty() {
        Vec::new()
    } else {
        let set: CpuSet = list.parse().ok()?;
        set.iter().map(NodeId).collect()
    };
    Some((count, nodes))
}

/// `0 cpus: 0 1`, `0 size: 3856 MB`, `0 free: <not available>`. `None` when
/// the line has another shape; `Some(Err)` for a bad CPU list.
fn node_line(hw: &mut NumaHardware, n: usize, rest: &str) -> Option<Result<(), ParseError>> {
    let (id, rest) = rest.split_once(' ')?;
    let id = NodeId(text::decimal(id)?);
    let (key, value) = rest.trim_start().split_once(':')?;
    let value = value.trim();
    let idx = match hw.nodes.iter().position(|x| x.id == id) {
        Some(i) => i,
        None => {
            hw.nodes.push(NumaNode {
                id,
                cpus: CpuSet::default(),
                size_mb: None,
                free_mb: None,
            });
            hw.nodes.len() - 1
        }
    };
    let node = hw.nodes.get_mut(idx)?;
    match key {
        "cpus" => match parse_cpus(value) {
            Ok(c) => node.cpus = c,
            Err(e) => return Some(Err(err(n, format!("node {id} cpus: {e}")))),
        },
        "size" => node.size_mb = mb(value)?,
        "free" => node.free_mb = mb(value)?,
        _ => return None,
    }
    Some(Ok(()))
}

/// `0 1 2 3`, `0-3, 6-7 (6)` (cpu-compress), or nothing.
fn parse_cpus(value: &str) -> Result<CpuSet, String> {
    let tokens: Vec<&str> = value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty() && !w.starts_with('('))
        .collect();
    if tokens.is_empty() {
        return Ok(CpuSet::default());
    }
    tokens
        .join(",")
        .parse()
        .map_err(|e: crate::model::TypeError| e.0)
}

/// `3856 MB` -> Some(Some(3856)); `<not available>` -> Some(None).
fn mb(value: &str) -> Option<Option<u64>> {
    if value.starts_with("<not available>") {
        return Some(None);
    }
    let num = value.strip_suffix("MB")?.trim();
    Some(Some(text::decimal(num)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/observe/numactl/", $name))
        };
    }

    fn cpus(s: &str) -> CpuSet {
        s.parse().unwrap()
    }

    fn assert_seed(hw: &NumaHardware) {
        assert!(hw.numa_available);
        assert_eq!(hw.node_count, 3);
        assert_eq!(hw.node_list, vec![NodeId(0), NodeId(1), NodeId(2)]);
        let want = [
            ("0-3", 3856, 3702),
            ("4-5", 1967, 1911),
            ("6-7", 1990, 1942),
        ];
        for (i, (c, size, free)) in want.iter().enumerate() {
            let node = hw.node(NodeId(i as u32)).unwrap();
            assert_eq!(node.cpus, cpus(c));
            assert_eq!(node.size_mb, Some(*size));
            assert_eq!(node.free_mb, Some(*free));
        }
        let d = hw.distances.as_ref().unwrap();
        assert_eq!(d.nodes, hw.node_list);
        for i in 0..3 {
            for j in 0..3 {
                let want = if i == j { 10 } else { 20 };
                assert_eq!(d.get(NodeId(i), NodeId(j)), Some(want));
            }
        }
        assert_eq!(d.get(NodeId(0), NodeId(3)), None);
    }

    #[test]
    fn seed_in_all_spellings() {
        for input in [
            fixture!("seed.txt"),
            fixture!("seed-crlf.txt"),
            fixture!("seed-numactl-2.0.19.txt"),
            fixture!("seed-cpu-compress.txt"),
        ] {
            assert_seed(&parse(input).unwrap());
        }
        assert_eq!(parse_cpus("0-3, 6-7 (6)").unwrap(), cpus("0-3,6-7"));
    }

    #[test]
    fn cpuless_single_and_sparse() {
        let hw = parse(fixture!("cpuless-node.txt")).unwrap();
        let n1 = hw.node(NodeId(1)).unwrap();
        assert!(n1.cpus.is_empty());
        assert_eq!(n1.size_mb, Some(1967));
        assert_eq!(
            hw.distances.as_ref().unwrap().get(NodeId(0), NodeId(2)),
            Some(31)
        );

        let hw = parse(fixture!("single-node.txt")).unwrap();
        assert_eq!((hw.node_count, hw.node_list.clone()), (1, vec![NodeId(0)]));
        assert_eq!(hw.nodes.len(), 1);
        assert_eq!(hw.distances.unwrap().rows, vec![vec![10]]);

        let hw = parse(fixture!("sparse-nodes.txt")).unwrap();
        assert_eq!(hw.node_list, vec![NodeId(0), NodeId(2)]);
        assert!(hw.node(NodeId(1)).is_none());
        assert_eq!(hw.node(NodeId(2)).unwrap().size_mb, Some(459));
        assert_eq!(hw.distances.unwrap().get(NodeId(2), NodeId(0)), Some(20));
    }

    #[test]
    fn unknown_sizes_no_distances_warnings() {
        let hw = parse(fixture!("no-distances.txt")).unwrap();
        assert_eq!(hw.node(NodeId(1)).unwrap().size_mb, None);
        assert_eq!(hw.node(NodeId(1)).unwrap().free_mb, None);
        assert_eq!(hw.distances, None);

        let hw = parse(fixture!("libnuma-warning.txt")).unwrap();
        assert_eq!(hw.warnings.len(), 1);
        assert!(hw.warnings[0].starts_with("libnuma: Warning"));
        assert_eq!(hw.node(NodeId(0)).unwrap().cpus.len(), 8);
    }

    #[test]
    fn no_numa() {
        let hw = parse(fixture!("no-numa.txt")).unwrap();
        assert!(!hw.numa_available);
        assert_eq!(hw.node_count, 0);
        assert!(hw.nodes.is_empty());
    }

    #[test]
    fn bad_inputs() {
        let e = parse(fixture!("bad-short-row.txt")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 15: distance row for node 2 has 2 values for 3 nodes"
        );
        let e = parse(fixture!("bad-cpu.txt")).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.starts_with("node 0 cpus: "), "{e}");
        let e = parse(fixture!("bad-not-numactl.txt")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: cannot read 'sh: numactl: not found'"
        );
        assert_eq!(parse("").unwrap_err().message, "no output");
        let e = parse("node 0 cpus: 0\n").unwrap_err();
        assert_eq!(e.message, "no 'available: N nodes' line");
        // Missing rows are reported at the header.
        let e = parse("available: 2 nodes (0-1)\nnode distances:\nnode   0   1\n  0:  10  20\n")
            .unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (3, "distance table has 1 rows for 2 nodes")
        );
        // Rows out of order.
        let e = parse("available: 2 nodes (0-1)\nnode distances:\nnode   0   1\n  1:  20  10\n")
            .unwrap_err();
        assert_eq!(e.line, 4);
        assert!(parse("available: many nodes (0-1)\n").is_err());
        assert!(parse("available: 2 nodes (0-1)\nnode 0 size: lots\n").is_err());
        assert!(parse("available: 2 nodes (0-1)\nnode 0 cpus: 0-99999\n").is_err());
    }
}
