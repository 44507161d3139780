//! `ls -d /sys/devices/system/node/node[0-9]*/access0/initiators/node[0-9]*;
//! grep . /sys/devices/system/node/node[0-9]*/access0/initiators/*_*`: what
//! the kernel shows of the ACPI HMAT (CONFIG_HMEM_REPORTING).
//!
//! For each memory node, access class 0 links its initiator node
//! (`.../node2/access0/initiators/node0`) and gives the read and write
//! latency (ns) and bandwidth (MB/s, MiB as QEMU writes them) between
//! them. Without an HMAT, `ls` and `grep` say `No such file or directory`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::text;
use super::ParseError;
use crate::model::NodeId;

/// Access class 0 of each memory node that has one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HmatFacts {
    /// By target (memory) node.
    pub nodes: BTreeMap<NodeId, HmatAccess>,
}

/// One node's `access0/initiators/`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HmatAccess {
    /// The initiator nodes linked.
    pub initiators: Vec<NodeId>,
    /// `read_latency` (ns).
    pub read_latency: Option<u64>,
    /// `write_latency` (ns).
    pub write_latency: Option<u64>,
    /// `read_bandwidth` (MB/s).
    pub read_bandwidth: Option<u64>,
    /// `write_bandwidth` (MB/s).
    pub write_bandwidth: Option<u64>,
}

/// Parses the `ls` and `grep` output.
///
/// # Errors
/// A [`ParseError`] naming the line for a line that is not a node's
/// `access0/initiators/` entry, or a value that is not a number.
pub fn parse(input: &str) -> Result<HmatFacts, ParseError> {
    let mut out = HmatFacts::default();
    for (n, line) in text::lines(input) {
        let t = line.trim();
        if t.is_empty()
            || text::is_kernel_line(line)
            || t.starts_with("grep:")
            || t.starts_with("ls:")
        {
            continue;
        }
        let fail = |msg: String| ParseError::at(n, msg);
        let (path, value) = match t.split_once(':') {
            Some((p, v)) => (p, Some(v.trim())),
            None => (t, None),
        };
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let [.., node, "access0", "initiators", leaf] = parts.as_slice() else {
            return Err(fail(format!(
                "expected a node's access0/initiators/ entry, found '{}'",
                text::snippet(t)
            )));
        };
        let node_id = |s: &str| {
            s.strip_prefix("node")
                .and_then(text::decimal::<u32>)
                .map(NodeId)
        };
        let target = node_id(node)
            .ok_or_else(|| fail(format!("'{}' is not a node", text::snippet(node))))?;
        let entry = out.nodes.entry(target).or_default();
        match value {
            None => {
                let init = node_id(leaf).ok_or_else(|| {
                    fail(format!(
                        "'{}' is not an initiator node",
                        text::snippet(leaf)
                    ))
                })?;
                if !entry.initiators.contains(&init) {
                    entry.initiators.push(init);
                }
            }
            Some(v) => {
                let v = text::decimal::<u64>(v).ok_or_else(|| {
                    fail(format!(
                        "{}: '{}' is not a number",
                        text::snippet(leaf),
                        text::snippet(v)
                    ))
                })?;
                match *leaf {
                    "read_latency" => entry.read_latency = Some(v),
                    "write_latency" => entry.write_latency = Some(v),
                    "read_bandwidth" => entry.read_bandwidth = Some(v),
                    "write_bandwidth" => entry.write_bandwidth = Some(v),
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/observe/hmat/", $name))
        };
    }

    #[test]
    fn memory_only_node_and_its_initiator() {
        let h = parse(fixture!("memory-only-6.12.txt")).unwrap();
        let n2 = &h.nodes[&NodeId(2)];
        assert_eq!(n2.initiators, [NodeId(0)]);
        assert_eq!(
            (n2.read_latency, n2.write_bandwidth),
            (Some(100), Some(4096))
        );
        assert_eq!(h.nodes[&NodeId(1)].initiators, [NodeId(1)]);
    }

    #[test]
    fn linux_6_1_shows_the_same() {
        assert_eq!(
            parse(fixture!("memory-only-6.1.txt")).unwrap().nodes[&NodeId(2)],
            parse(fixture!("memory-only-6.12.txt")).unwrap().nodes[&NodeId(2)]
        );
    }

    #[test]
    fn no_hmat_and_bad_lines() {
        let none = parse(fixture!("no-hmat-busybox.txt")).unwrap();
        assert!(none.nodes.is_empty());
        assert!(
            parse("/sys/devices/system/node/node0/access0/initiators/read_latency:fast\n").is_err()
        );
        assert!(parse("latency 10\n").is_err());
    }
}
