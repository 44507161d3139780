//! Newtypes for the things of the domain: NUMA node ids, CPU sets, sizes,
//! PCI bus numbers and addresses, vendor:device ids, MAC addresses.
//!
//! Each has `FromStr` and `Display` that round-trip, so a raw string such as
//! `"0000:b5:00.0"` never has to cross a module boundary.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a value of one of the newtypes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, TypeError> {
    Err(TypeError(msg.into()))
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A guest NUMA node (libvirt `<cell id>`), numbered from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A set of vCPU numbers, written in the kernel's cpuset syntax (`0-3,6`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct CpuSet(BTreeSet<u32>);

/// The highest CPU number a cpuset may name; keeps `0-4294967295` from
/// allocating the universe.
pub const CPU_MAX: u32 = 4095;

impl CpuSet {
    /// A set from CPU numbers.
    pub fn from_cpus(cpus: impl IntoIterator<Item = u32>) -> Self {
        CpuSet(cpus.into_iter().collect())
    }
    /// The CPUs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }
    /// Number of CPUs in the set.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when the set holds no CPU.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// True when `cpu` is in the set.
    pub fn contains(&self, cpu: u32) -> bool {
        self.0.contains(&cpu)
    }
    /// The highest CPU in the set.
    pub fn max(&self) -> Option<u32> {
        self.0.iter().next_back().copied()
    }
    /// CPUs in both sets.
    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.intersection(&other.0).copied().collect())
    }
    /// CPUs in either set.
    pub fn union(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.union(&other.0).copied().collect())
    }
    /// The list form numactl prints: `0 1 2 3`.
    pub fn to_spaced(&self) -> String {
        self.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl FromStr for CpuSet {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, TypeError> {
        parse_id_set(s, "CPU").map(CpuSet)
    }
}

/// Reads the kernel's list syntax (`0-3,6`) into a set of numbers up to
/// [`CPU_MAX`]; `noun` names what the numbers are in errors (`CPU`, `node`).
fn parse_id_set(s: &str, noun: &str) -> Result<BTreeSet<u32>, TypeError> {
    let s = s.trim();
    if s.is_empty() {
        return err(format!("empty {}set", noun.to_ascii_lowercase()));
    }
    // A bitmap while parsing: "0-4095,0-4095,..." repeated must not cost
    // a set insert per number per range.
    let mut bits = [0u64; (CPU_MAX as usize + 1) / 64];
    let mut mark = |a: u32, b: u32| {
        let mut cpu = a;
        while cpu <= b {
            let (w, bit) = (cpu as usize / 64, cpu % 64);
            if bit == 0 && cpu + 63 <= b {
                bits[w] = u64::MAX;
                cpu += 64;
            } else {
                bits[w] |= 1 << bit;
                cpu += 1;
            }
        }
    };
    for part in s.split(',') {
        let part = part.trim();
        let num = |t: &str| -> Result<u32, TypeError> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return err(format!("'{part}' is not a {noun} number or range like 0-3"));
            }
            match t.parse::<u32>() {
                Ok(n) if n <= CPU_MAX => Ok(n),
                _ => err(format!("{noun} {t} is above the limit of {CPU_MAX}")),
            }
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return err(format!("range '{part}' runs backwards"));
                }
                mark(a, b);
            }
            None => {
                let n = num(part)?;
                mark(n, n);
            }
        }
    }
    Ok((0..=CPU_MAX)
        .filter(|&c| bits[c as usize / 64] & (1 << (c % 64)) != 0)
        .collect())
}

/// Writes a set in the kernel's list syntax, ranges collapsed: `0-3,6`.
fn fmt_id_set(ids: &BTreeSet<u32>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let cpus: Vec<u32> = ids.iter().copied().collect();
    let mut first = true;
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        if !first {
            f.write_str(",")?;
        }
        first = false;
        if start == end {
            write!(f, "{start}")?;
        } else {
            write!(f, "{start}-{end}")?;
        }
        i += 1;
    }
    Ok(())
}

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_id_set(&self.0, f)
    }
}
serde_via_str!(CpuSet);

/// A set of NUMA node numbers in the kernel's list syntax (`0-1,3`): host
/// nodes in `[tuning]` (libvirt's `nodeset`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct NodeSet(BTreeSet<u32>);

impl NodeSet {
    /// A set from node numbers.
    pub fn from_nodes(nodes: impl IntoIterator<Item = u32>) -> Self {
        NodeSet(nodes.into_iter().collect())
    }
    /// The nodes in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }
    /// Number of nodes in the set.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when the set holds no node.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// True when `node` is in the set.
    pub fn contains(&self, node: u32) -> bool {
        self.0.contains(&node)
    }
}

impl FromStr for NodeSet {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, TypeError> {
        parse_id_set(s, "node").map(NodeSet)
    }
}

impl fmt::Display for NodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_id_set(&self.0, f)
    }
}
serde_via_str!(NodeSet);

/// A huge page size of x86-64: 2 MiB or 1 GiB, written `2M` and `1G` as in
/// the kernel's `hugepagesz=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HugePageSize {
    /// 2 MiB pages (`hugepages-2048kB` in sysfs).
    M2,
    /// 1 GiB "gigantic" pages (`hugepages-1048576kB`).
    G1,
}

impl HugePageSize {
    /// Both sizes, smallest first.
    pub const ALL: [HugePageSize; 2] = [HugePageSize::M2, HugePageSize::G1];
    /// The size in KiB: 2048 or 1048576 (sysfs names the directories by it).
    pub const fn kib(self) -> u64 {
        match self {
            HugePageSize::M2 => 2048,
            HugePageSize::G1 => 1024 * 1024,
        }
    }
    /// The size as a [`Bytes`].
    pub const fn bytes(self) -> Bytes {
        Bytes::from_kib(self.kib())
    }
    /// The size with a kB suffix, as sysfs and the check ids write it: `2048kB`.
    pub fn sysfs_name(self) -> String {
        format!("{}kB", self.kib())
    }
    /// The size for the size with `kib` KiB.
    pub fn from_kib(kib: u64) -> Option<HugePageSize> {
        HugePageSize::ALL.into_iter().find(|s| s.kib() == kib)
    }
}

impl fmt::Display for HugePageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HugePageSize::M2 => "2M",
            HugePageSize::G1 => "1G",
        })
    }
}

impl FromStr for HugePageSize {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, TypeError> {
        match s.trim() {
            "2M" => Ok(HugePageSize::M2),
            "1G" => Ok(HugePageSize::G1),
            other => err(format!(
                "unknown huge page size '{other}': x86-64 has \"2M\" and \"1G\""
            )),
        }
    }
}
serde_via_str!(HugePageSize);

/// A memory size, kept in KiB (the unit libvirt speaks). Written as an
/// integer and a unit: `4096000 KiB`, `2000 MiB`, `8 GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes {
    kib: u64,
}

/// The largest size accepted: 16 TiB, far beyond any test host.
pub const BYTES_MAX_KIB: u64 = 16 << 30;

impl Bytes {
    /// A size of `kib` KiB.
    pub const fn from_kib(kib: u64) -> Self {
        Bytes { kib }
    }
    /// A size of `mib` MiB.
    pub const fn from_mib(mib: u64) -> Self {
        Bytes { kib: mib * 1024 }
    }
    /// The size in KiB.
    pub const fn kib(self) -> u64 {
        self.kib
    }
    /// The size in MiB, rounded down (what `numactl --hardware` prints as MB).
    pub const fn mib(self) -> u64 {
        self.kib / 1024
    }
}

impl FromStr for Bytes {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, TypeError> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (n, unit) = t.split_at(split);
        let unit = unit.trim();
        if n.is_empty() {
            return err(format!(
                "'{s}' is not a size: expected an integer and KiB, MiB or GiB, like '2048 MiB'"
            ));
        }
        let mult: u64 = match unit {
            "KiB" => 1,
            "MiB" => 1024,
            "GiB" => 1024 * 1024,
            "" => {
                return err(format!(
                    "'{s}' has no unit: write KiB, MiB or GiB, like '{n} MiB'"
                ))
            }
            "K" | "KB" | "k" | "kb" | "M" | "MB" | "G" | "GB" | "m" | "g" | "mb" | "gb" => {
                return err(format!("unit '{unit}' is ambiguous: write KiB, MiB or GiB"))
            }
            _ => return err(format!("unknown unit '{unit}': write KiB, MiB or GiB")),
        };
        let n: u64 = n
            .parse()
            .map_err(|_| TypeError(format!("'{s}' is too large")))?;
        match n.checked_mul(mult) {
            Some(kib) if kib <= BYTES_MAX_KIB => Ok(Bytes { kib }),
            _ => err(format!("'{s}' is too large (the limit is 16 TiB)")),
        }
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kib != 0 && self.kib % (1024 * 1024) == 0 {
            write!(f, "{} GiB", self.kib / (1024 * 1024))
        } else if self.kib != 0 && self.kib % 1024 == 0 {
            write!(f, "{} MiB", self.kib / 1024)
        } else {
            write!(f, "{} KiB", self.kib)
        }
    }
}
serde_via_str!(Bytes);

/// A PCI bus number as the guest sees it (libvirt's `busNr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BusNr(pub u8);

impl fmt::Display for BusNr {
    /// Two hex digits, as lspci prints it: `b4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}", self.0)
    }
}

impl FromStr for BusNr {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, TypeError> {
        u8::from_str_radix(s.trim(), 16)
            .map(BusNr)
            .map_err(|_| TypeError(format!("'{s}' is not a hex bus number")))
    }
}
serde_via_str!(BusNr);

/// A PCI address as the guest sees it: domain, bus, slot (device), function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// PCI segment (always 0 here).
    pub domain: u16,
    /// Bus number.
    pub bus: BusNr,
    /// Slot (device) number, 0..=31.
    pub slot: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

impl Bdf {
    /// An address in PCI domain 0.
    pub const fn new(bus: u8, slot: u8, function: u8) -> Self {
        Bdf {
            domain: 0,
            bus: BusNr(bus),
            slot,
            function,
        }
    }
    /// The short form without the domain: `b5:00.0`.
    pub fn short(&self) -> String {
        format!("{}:{:02x}.{:x}", self.bus, self.slot, self.function)
    }
}

impl fmt::Display for Bdf {
    /// The full form lspci -D and sysfs use: `0000:b5:00.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{}", self.domain, self.short())
    }
}

impl FromStr for Bdf {
    type Err = TypeError;
    /// Reads `0000:b5:00.0` or `b5:00.0`.
    fn from_str(s: &str) -> Result<Self, TypeError> {
        let bad = || TypeError(format!("'{s}' is not a PCI address like 0000:b5:00.0"));
        let t = s.trim();
        let (rest, function) = t.rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, slot) = match parts.as_slice() {
            [d, b, s] => (*d, *b, *s),
            [b, s] => ("0", *b, *s),
            _ => return Err(bad()),
        };
        let hex = |x: &str, max: u32| -> Result<u32, TypeError> {
            if x.is_empty() || x.len() > 4 || !x.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad());
            }
            let v = u32::from_str_radix(x, 16).map_err(|_| bad())?;
            if v > max {
                return Err(bad());
            }
            Ok(v)
        };
        Ok(Bdf {
            domain: hex(domain, 0xffff)? as u16,
            bus: BusNr(hex(bus, 0xff)? as u8),
            slot: hex(slot, 31)? as u8,
            function: hex(function, 7)? as u8,
        })
    }
}
serde_via_str!(Bdf);

/// A PCI vendor:device pair, written `8086:10d3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciId {
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
}

impl PciId {
    /// A vendor:device pair.
    pub const fn new(vendor: u16, device: u16) -> Self {
        PciId { vendor, device }
    }
}

impl fmt::Display for PciId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.device)
    }
}

impl FromStr for PciId {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, TypeError> {
        let bad = || TypeError(format!("'{s}' is not a vendor:device id like 8086:10d3"));
        let (v, d) = s.trim().split_once(':').ok_or_else(bad)?;
        if v.len() != 4 || d.len() != 4 {
            return Err(bad());
        }
        Ok(PciId {
            vendor: u16::from_str_radix(v, 16).map_err(|_| bad())?,
            device: u16::from_str_radix(d, 16).map_err(|_| bad())?,
        })
    }
}
serde_via_str!(PciId);

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// True when the locally-administered bit is set and the address is unicast.
    pub fn is_local_unicast(&self) -> bool {
        self.0[0] & 0x02 != 0 && self.0[0] & 0x01 == 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, TypeError> {
        let bad = || TypeError(format!("'{s}' is not a MAC address like 02:00:00:00:00:01"));
        let parts: Vec<&str> = s.trim().split(':').collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut b = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(bad());
            }
            b[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(b))
    }
}
serde_via_str!(MacAddr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuset_round_trips() {
        for (input, canon) in [
            ("0-3", "0-3"),
            ("0,2,4-5", "0,2,4-5"),
            ("3,2,1,0", "0-3"),
            ("7", "7"),
        ] {
            let c: CpuSet = input.parse().unwrap();
            assert_eq!(c.to_string(), canon);
        }
        assert!("".parse::<CpuSet>().is_err());
        assert!("3-1".parse::<CpuSet>().is_err());
        assert!("a".parse::<CpuSet>().is_err());
        assert!("0-99999".parse::<CpuSet>().is_err());
        assert!("-1".parse::<CpuSet>().is_err());
        assert!("1,,2".parse::<CpuSet>().is_err());
        let n: NodeSet = "0-1,3".parse().unwrap();
        assert_eq!(n.to_string(), "0-1,3");
        assert!(n.contains(3) && !n.contains(2));
        assert_eq!(
            "x".parse::<NodeSet>().unwrap_err().0,
            "'x' is not a node number or range like 0-3"
        );
        assert_eq!(
            "x".parse::<CpuSet>().unwrap_err().0,
            "'x' is not a CPU number or range like 0-3"
        );
    }

    #[test]
    fn huge_page_sizes() {
        assert_eq!("2M".parse::<HugePageSize>().unwrap().kib(), 2048);
        assert_eq!(
            "1G".parse::<HugePageSize>().unwrap().sysfs_name(),
            "1048576kB"
        );
        assert!("2MB".parse::<HugePageSize>().is_err());
        assert_eq!(HugePageSize::from_kib(2048), Some(HugePageSize::M2));
        assert_eq!(HugePageSize::G1.to_string(), "1G");
    }

    #[test]
    fn bytes_units() {
        assert_eq!("4096000 KiB".parse::<Bytes>().unwrap().kib(), 4096000);
        assert_eq!("2000 MiB".parse::<Bytes>().unwrap().kib(), 2048000);
        assert_eq!("8GiB".parse::<Bytes>().unwrap().kib(), 8 * 1024 * 1024);
        assert!("8 GB".parse::<Bytes>().is_err());
        assert!("8".parse::<Bytes>().is_err());
        assert!("-8 MiB".parse::<Bytes>().is_err());
        assert!("99999999999999999999 KiB".parse::<Bytes>().is_err());
        assert_eq!(Bytes::from_kib(2048000).to_string(), "2000 MiB");
    }

    #[test]
    fn bdf_forms() {
        let b: Bdf = "0000:b5:00.0".parse().unwrap();
        assert_eq!(b, Bdf::new(0xb5, 0, 0));
        assert_eq!(b.to_string(), "0000:b5:00.0");
        assert_eq!(b.short(), "b5:00.0");
        assert_eq!("c9:10.4".parse::<Bdf>().unwrap(), Bdf::new(0xc9, 0x10, 4));
        assert!("b5:00".parse::<Bdf>().is_err());
        assert!("b5:20.0".parse::<Bdf>().is_err());
        assert!("b5:00.8".parse::<Bdf>().is_err());
    }

    #[test]
    fn ids_and_macs() {
        assert_eq!(
            "8086:10d3".parse::<PciId>().unwrap(),
            PciId::new(0x8086, 0x10d3)
        );
        let m: MacAddr = "52:54:00:ab:cd:ef".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:ef");
        assert!(m.is_local_unicast());
    }
}
