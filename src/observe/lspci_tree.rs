//! `lspci -t -v` (or `lspci -t`): the PCI bus tree.
//!
//! How pciutils draws it (ls-tree.c): every bus is either the single bus of
//! its parent (`-[0000:00]-` for the host, nothing for a bridge) or one of a
//! list of buses (`+-[0000:b4]-` ... `\-[0000:dc]-`). The devices of a bus
//! follow as `--dev` (only one), `+-dev` ... `\-dev` (several). A bridge
//! prints `dev-[sec]-` or `dev-[sec-sub]-`, then its own bus, whose devices
//! are on the bridge's secondary bus. When a line is done, lspci turns every
//! `+` and `|` of it into `|` and every other character into a space: that
//! is the prefix of the next line, which then continues the open `+-` list
//! found at the column of its first `+-` or `\-`. This parser keeps the open
//! lists by column, so roots, bridges and devices may come in any order.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::text;
use super::ParseError;
use crate::model::{Bdf, BusNr, PciId};

/// The bus numbers a bridge forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BusRange {
    /// The bus right behind the bridge; devices drawn after the bridge are on it.
    pub secondary: BusNr,
    /// The highest bus behind the bridge (equal to `secondary` for `-[b5]-`).
    pub subordinate: BusNr,
}

/// One device of the tree, with where it hangs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeDevice {
    /// Full address; the bus comes from the root bus or the parent bridge.
    pub bdf: Bdf,
    /// The name lspci printed (`-v`), without a trailing `[vvvv:dddd]`;
    /// `None` when no name was printed (plain `lspci -t`, or `-n`). lspci
    /// never names a bridge drawn as `00.0-[b5]--`, so bridges have `None`.
    /// Old pci.ids files print names like `Red Hat, Inc. Device 000b`.
    pub name: Option<String>,
    /// vendor:device when printed (`-nn`, `-n`, or a `Device 1b36:000b`
    /// name from a missing pci.ids).
    pub id: Option<PciId>,
    /// The bridge this device sits behind; `None` on a root bus.
    pub parent: Option<Bdf>,
    /// The root bus the device hangs under, directly or through bridges.
    pub root_bus: BusNr,
    /// For a bridge, the buses behind it.
    pub bridge: Option<BusRange>,
    /// 1-based line of the capture where the device was drawn.
    pub line: usize,
}

/// The parsed tree: devices in the order lspci drew them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciTree {
    devices: Vec<TreeDevice>,
    roots: Vec<BusNr>,
    skipped_lines: Vec<usize>,
}

impl PciTree {
    /// A tree from devices, for tests of code that consumes trees. The root
    /// buses are those of the devices.
    pub fn from_devices(devices: Vec<TreeDevice>) -> Self {
        let roots = devices.iter().map(|d| d.root_bus).collect();
        PciTree {
            devices,
            roots,
            skipped_lines: Vec::new(),
        }
    }
    /// Every device, flattened, in drawing order.
    pub fn devices(&self) -> Vec<TreeDevice> {
        self.devices.clone()
    }
    /// Every device, borrowed, in drawing order.
    pub fn iter(&self) -> impl Iterator<Item = &TreeDevice> + '_ {
        self.devices.iter()
    }
    /// The root buses (`[0000:b4]`), ascending, whatever order lspci used.
    pub fn root_buses(&self) -> Vec<BusNr> {
        let set: BTreeSet<BusNr> = self.roots.iter().copied().collect();
        set.into_iter().collect()
    }
    /// The device at `bdf`.
    pub fn device(&self, bdf: Bdf) -> Option<&TreeDevice> {
        self.devices.iter().find(|d| d.bdf == bdf)
    }
    /// The devices right behind the bridge at `bdf`.
    pub fn children(&self, bdf: Bdf) -> Vec<&TreeDevice> {
        self.devices
            .iter()
            .filter(|d| d.parent == Some(bdf))
            .collect()
    }
    /// The devices directly on root bus `bus` (not behind a bridge).
    pub fn on_root(&self, bus: BusNr) -> Vec<&TreeDevice> {
        self.devices
            .iter()
            .filter(|d| d.parent.is_none() && d.bdf.bus == bus)
            .collect()
    }
    /// Number of devices.
    pub fn len(&self) -> usize {
        self.devices.len()
    }
    /// True when the tree holds no device.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
    /// Lines that were not part of the tree and were left out: kernel
    /// messages from a serial console, lspci's own warnings.
    pub fn skipped_lines(&self) -> &[usize] {
        &self.skipped_lines
    }
}

/// Parses `lspci -t -v` / `lspci -t` output.
///
/// # Errors
/// A [`ParseError`] naming the line when a tree line cannot be read, a
/// continuation line matches no open branch, or the output holds no tree.
pub fn parse(input: &str) -> Result<PciTree, ParseError> {
    let mut p = TreeParser::default();
    // A console message can start in the middle of a tree line; the rest of
    // that line then follows the message. Rejoin the two halves.
    let mut pending: Option<(usize, String)> = None;
    for (n, raw) in text::lines(input) {
        if text::is_kernel_line(raw) || is_tool_noise(raw) {
            p.tree.skipped_lines.push(n);
            continue;
        }
        let (n, line) = match pending.take() {
            Some((first, mut head)) => {
                head.push_str(raw);
                (first, head)
            }
            None => (n, raw.to_string()),
        };
        if let Some(cut) = text::find_inner_timestamp(&line) {
            let head = line.get(..cut).unwrap_or_default().to_string();
            pending = Some((n, head));
            continue;
        }
        p.line(n, &line)?;
    }
    if let Some((n, head)) = pending {
        p.line(n, &head)?;
    }
    if !p.seen_tree {
        return Err(err(1, "no PCI tree in the output".to_string()));
    }
    Ok(p.tree)
}

/// Warnings lspci prints on stderr, captured with `2>&1`.
fn is_tool_noise(line: &str) -> bool {
    line.starts_with("lspci: ") || line.starts_with("pcilib: ")
}

fn err(line: usize, message: String) -> ParseError {
    ParseError::at(line, message)
}

/// The bus a list of devices is on.
#[derive(Debug, Clone, Copy)]
struct BusCtx {
    domain: u16,
    bus: u8,
    parent: Option<Bdf>,
    root: BusNr,
}

/// An open `+-` list waiting for more entries on later lines.
#[derive(Debug, Clone, Copy)]
enum Branch {
    /// More devices of this bus.
    Devices(BusCtx),
    /// More buses of the host (`None`) or of a bridge (its address and root).
    Buses(Option<(Bdf, BusNr)>),
}

/// What the line is expected to hold at a position.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// `[dddd:bb]-` then the bus body.
    BusLabel(usize, Option<(Bdf, BusNr)>),
    /// `--dev`, `+-dev`, `\-dev`, or nothing (empty bus).
    BusBody(usize, BusCtx),
    /// `ss.f` then a bridge or a name.
    Device(usize, BusCtx),
}

#[derive(Default)]
struct TreeParser {
    tree: PciTree,
    /// Open lists by column, ascending.
    open: Vec<(usize, Branch)>,
    seen_tree: bool,
}

/// What `lspci -t -vv` prints under a device (ls-tree.c show_bases).
const BASES_LINES: [&str; 5] = [
    "Memory at",
    "I/O ports at",
    "Region ",
    "[virtual]",
    "[enhanced]",
];

impl TreeParser {
    fn line(&mut self, n: usize, line: &str) -> Result<(), ParseError> {
        let bytes = line.as_bytes();
        if line.trim().is_empty() {
            return Ok(());
        }
        let cannot = || err(n, format!("cannot read '{}'", text::snippet(line)));
        // A new forest: the host bridge's line starts at column 0.
        if bytes.first() == Some(&b'-') {
            self.open.clear();
            self.seen_tree = true;
            let step = self.host_bus_start(n, line, 1)?;
            return self.run(n, line, step);
        }
        let col = bytes
            .iter()
            .position(|&b| b != b' ' && b != b'|')
            .ok_or_else(cannot)?;
        let rest = line.get(col..).unwrap_or_default();
        if !matches!(bytes.get(col), Some(b'+') | Some(b'\\')) {
            if self.seen_tree && BASES_LINES.iter().any(|p| rest.starts_with(p)) {
                self.tree.skipped_lines.push(n);
                return Ok(());
            }
            return Err(cannot());
        }
        if bytes.get(col + 1) != Some(&b'-') {
            return Err(cannot());
        }
        // Lists deeper than this column were complete; this one continues.
        while self.open.last().is_some_and(|(c, _)| *c > col) {
            self.open.pop();
        }
        let branch = match self.open.last() {
            Some((c, b)) if *c == col => *b,
            _ => {
                return Err(err(
                    n,
                    format!(
                        "'{}' continues no open branch at column {}",
                        text::snippet(rest),
                        col + 1
                    ),
                ))
            }
        };
        if bytes.get(col) == Some(&b'\\') {
            self.open.pop();
        }
        let step = match branch {
            Branch::Devices(ctx) => Step::Device(col + 2, ctx),
            Branch::Buses(parent) => Step::BusLabel(col + 2, parent),
        };
        self.run(n, line, step)
    }

    /// After the host bridge's `-` at column 0: `[dddd:bb]-` (one root bus)
    /// or `+-[dddd:bb]-` / `\-[dddd:bb]-` (a list of root buses).
    fn host_bus_start(&mut self, n: usize, line: &str, pos: usize) -> Result<Step, ParseError> {
        let bytes = line.as_bytes();
        match (bytes.get(pos), bytes.get(pos + 1)) {
            (Some(b'['), _) => Ok(Step::BusLabel(pos, None)),
            (Some(b'+'), Some(b'-')) => {
                self.open_at(pos, Branch::Buses(None));
                Ok(Step::BusLabel(pos + 2, None))
            }
            (Some(b'\\'), Some(b'-')) => Ok(Step::BusLabel(pos + 2, None)),
            _ => Err(err(n, format!("cannot read '{}'", text::snippet(line)))),
        }
    }

    fn run(&mut self, n: usize, line: &str, mut step: Step) -> Result<(), ParseError> {
        let bytes = line.as_bytes();
        let at = |pos: usize| bytes.get(pos).copied();
        let bad = |pos: usize, what: &str| {
            let rest = line.get(pos..).unwrap_or_default();
            err(
                n,
                format!(
                    "expected {what} at column {}, found '{}'",
                    pos + 1,
                    text::snippet(rest)
                ),
            )
        };
        loop {
            step = match step {
                Step::BusLabel(pos, parent) => {
                    // [dddd:bb]-
                    let field = |a: usize, b: usize| line.get(a..b).unwrap_or_default();
                    let domain = text::hex_exact(field(pos + 1, pos + 5), 4);
                    let bus = text::hex_exact(field(pos + 6, pos + 8), 2);
                    let shape = at(pos) == Some(b'[')
                        && at(pos + 5) == Some(b':')
                        && at(pos + 8) == Some(b']')
                        && at(pos + 9) == Some(b'-');
                    let (Some(domain), Some(bus), true) = (domain, bus, shape) else {
                        return Err(bad(pos, "a bus like [0000:b4]-"));
                    };
                    let (domain, bus) = (domain as u16, bus as u8);
                    let ctx = match parent {
                        None => {
                            self.tree.roots.push(BusNr(bus));
                            BusCtx {
                                domain,
                                bus,
                                parent: None,
                                root: BusNr(bus),
                            }
                        }
                        Some((bridge, root)) => BusCtx {
                            domain,
                            bus,
                            parent: Some(bridge),
                            root,
                        },
                    };
                    Step::BusBody(pos + 10, ctx)
                }
                Step::BusBody(pos, ctx) => match (at(pos), at(pos + 1)) {
                    (None, _) => return Ok(()),
                    (Some(b'-'), Some(b'-')) => Step::Device(pos + 2, ctx),
                    (Some(b'+'), Some(b'-')) => {
                        self.open_at(pos, Branch::Devices(ctx));
                        Step::Device(pos + 2, ctx)
                    }
                    (Some(b'\\'), Some(b'-')) => Step::Device(pos + 2, ctx),
                    _ => return Err(bad(pos, "'--', '+-' or '\\-' before a device")),
                },
                Step::Device(pos, ctx) => {
                    let field = |a: usize, b: usize| line.get(a..b).unwrap_or_default();
                    let slot = text::hex_exact(field(pos, pos + 2), 2).filter(|s| *s <= 0x1f);
                    let func = text::hex_exact(field(pos + 3, pos + 4), 1).filter(|f| *f <= 7);
                    let (Some(slot), Some(func), Some(b'.')) = (slot, func, at(pos + 2)) else {
                        return Err(bad(pos, "a device like 00.0"));
                    };
                    let bdf = Bdf {
                        domain: ctx.domain,
                        bus: BusNr(ctx.bus),
                        slot: slot as u8,
                        function: func as u8,
                    };
                    let pos = pos + 4;
                    if at(pos) == Some(b'-') && at(pos + 1) == Some(b'[') {
                        let (range, next) = bridge_range(line, pos + 1)
                            .ok_or_else(|| bad(pos, "a bridge like -[b5]-"))?;
                        self.push(TreeDevice {
                            bdf,
                            name: None,
                            id: None,
                            parent: ctx.parent,
                            root_bus: ctx.root,
                            bridge: Some(range),
                            line: n,
                        });
                        // show_tree_bridge: '-', then one bus or a bus list.
                        if at(next) != Some(b'-') {
                            return Err(bad(next, "'-' after a bridge"));
                        }
                        let pos = next + 1;
                        match (at(pos), at(pos + 1), at(pos + 2)) {
                            (Some(b'+'), Some(b'-'), Some(b'[')) => {
                                self.open_at(pos, Branch::Buses(Some((bdf, ctx.root))));
                                Step::BusLabel(pos + 2, Some((bdf, ctx.root)))
                            }
                            (Some(b'\\'), Some(b'-'), Some(b'[')) => {
                                Step::BusLabel(pos + 2, Some((bdf, ctx.root)))
                            }
                            _ => Step::BusBody(
                                pos,
                                BusCtx {
                                    domain: ctx.domain,
                                    bus: range.secondary.0,
                                    parent: Some(bdf),
                                    root: ctx.root,
                                },
                            ),
                        }
                    } else {
                        let rest = line.get(pos..).unwrap_or_default();
                        if !rest.is_empty() && !rest.starts_with(' ') {
                            return Err(bad(pos, "a name or the end of the line after a device"));
                        }
                        let (name, id) = split_name(rest);
                        self.push(TreeDevice {
                            bdf,
                            name,
                            id,
                            parent: ctx.parent,
                            root_bus: ctx.root,
                            bridge: None,
                            line: n,
                        });
                        return Ok(());
                    }
                }
            };
        }
    }

    /// Opens a `+-` list at `col`; lists at that column or deeper are done.
    fn open_at(&mut self, col: usize, branch: Branch) {
        while self.open.last().is_some_and(|(c, _)| *c >= col) {
            self.open.pop();
        }
        self.open.push((col, branch));
    }

    fn push(&mut self, dev: TreeDevice) {
        self.tree.devices.push(dev);
    }
}

/// `[b5]-` or `[01-02]-` starting at `pos` (the `[`): the range and the
/// position after the closing `]-`.
fn bridge_range(line: &str, pos: usize) -> Option<(BusRange, usize)> {
    let bytes = line.as_bytes();
    if bytes.get(pos) != Some(&b'[') {
        return None;
    }
    let sec = text::hex_exact(line.get(pos + 1..pos + 3)?, 2)? as u8;
    let (sub, close) = match bytes.get(pos + 3) {
        Some(b']') => (sec, pos + 3),
        Some(b'-') => (
            text::hex_exact(line.get(pos + 4..pos + 6)?, 2)? as u8,
            pos + 6,
        ),
        _ => return None,
    };
    if bytes.get(close) != Some(&b']') || bytes.get(close + 1) != Some(&b'-') {
        return None;
    }
    Some((
        BusRange {
            secondary: BusNr(sec),
            subordinate: BusNr(sub),
        },
        close + 2,
    ))
}

/// The name printed after a device, and its id when one is printed:
/// `Name [8086:10d3]` (`-nn`), `8086:10d3` (`-n`), `Device 8086:10d3`
/// (no pci.ids at all).
fn split_name(rest: &str) -> (Option<String>, Option<PciId>) {
    let name = rest.trim();
    if name.is_empty() {
        return (None, None);
    }
    if let Some(id) = text::pci_id(name) {
        return (None, Some(id));
    }
    if let Some(inner) = name.strip_suffix(']') {
        if let Some((head, id)) = inner.rsplit_once(" [") {
            if let Some(id) = text::pci_id(id) {
                let head = head.trim();
                let head = (!head.is_empty()).then(|| head.to_string());
                return (head, Some(id));
            }
        }
    }
    let id = name
        .rsplit_once("Device ")
        .and_then(|(_, last)| text::pci_id(last));
    (Some(name.to_string()), id)
}

#[cfg(test)]
#[path = "lspci_tree_tests.rs"]
mod tests;
