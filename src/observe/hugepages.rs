//! `grep . /sys/devices/system/node/node[0-9]*/hugepages/hugepages-*/nr_hugepages`:
//! the huge pages each node holds, by size.
//!
//! Lines are `/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages:64`;
//! `free_hugepages` and `surplus_hugepages` lines are read past. Without
//! NUMA in sysfs, grep says `No such file or directory` (skipped).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::text;
use super::ParseError;
use crate::model::NodeId;

/// Node -> page size in KiB -> pages (`nr_hugepages`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugepageCounts {
    /// By node, then by page size in KiB.
    pub nodes: BTreeMap<NodeId, BTreeMap<u64, u64>>,
}

impl HugepageCounts {
    /// `nr_hugepages` of pages of `kib` KiB on `node`, when shown.
    pub fn get(&self, node: NodeId, kib: u64) -> Option<u64> {
        self.nodes.get(&node)?.get(&kib).copied()
    }
}

/// Parses the grep output.
///
/// # Errors
/// A [`ParseError`] naming the line for a line that is not
/// `<node>/hugepages/hugepages-<size>kB/<file>:<count>`, or a count that is
/// not a number.
pub fn parse(input: &str) -> Result<HugepageCounts, ParseError> {
    let mut out = HugepageCounts::default();
    for (n, line) in text::lines(input) {
        let t = line.trim();
        if t.is_empty() || text::is_kernel_line(line) || t.starts_with("grep:") {
            continue;
        }
        let fail = |msg: String| ParseError::at(n, msg);
        let parsed = t.split_once(':').and_then(|(path, value)| {
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            match parts.as_slice() {
                [.., node, "hugepages", size, file] => Some((*node, *size, *file, value)),
                _ => None,
            }
        });
        let Some((node, size, file, value)) = parsed else {
            return Err(fail(format!(
                "expected '<node>/hugepages/hugepages-<size>kB/nr_hugepages:<count>', found '{}'",
                text::snippet(t)
            )));
        };
        if file != "nr_hugepages" {
            continue;
        }
        let node = node
            .strip_prefix("node")
            .and_then(text::decimal::<u32>)
            .ok_or_else(|| fail(format!("'{}' is not a node", text::snippet(node))))?;
        let kib = size
            .strip_prefix("hugepages-")
            .and_then(|s| s.strip_suffix("kB"))
            .and_then(text::decimal::<u64>)
            .ok_or_else(|| fail(format!("'{}' is not a page size", text::snippet(size))))?;
        let count = text::decimal::<u64>(value.trim())
            .ok_or_else(|| fail(format!("count '{}' is not a number", text::snippet(value))))?;
        out.nodes
            .entry(NodeId(node))
            .or_default()
            .insert(kib, count);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/observe/hugepages/", $name))
        };
    }

    #[test]
    fn per_node_and_size() {
        let h = parse(fixture!("two-sizes-three-nodes.txt")).unwrap();
        assert_eq!(h.get(NodeId(0), 2048), Some(16));
        assert_eq!(h.get(NodeId(1), 2048), Some(8));
        assert_eq!(h.get(NodeId(0), 1048576), Some(0));
        assert_eq!(h.get(NodeId(3), 2048), None);
    }

    #[test]
    fn a_gigantic_page_on_node_1() {
        let h = parse(fixture!("cern-6.12.txt")).unwrap();
        assert_eq!(h.get(NodeId(1), 1048576), Some(1));
        assert_eq!(h.get(NodeId(0), 1048576), Some(0));
        assert_eq!(h.get(NodeId(0), 2048), Some(64));
    }

    #[test]
    fn odd_inputs() {
        assert!(parse("grep: /sys/devices/system/node/node*/hugepages/hugepages-*/nr_hugepages: No such file or directory\n").unwrap().nodes.is_empty());
        assert_eq!(
            parse("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages:x\n")
                .unwrap_err()
                .line,
            1
        );
        assert!(parse("nr_hugepages 5\n").is_err());
    }
}
