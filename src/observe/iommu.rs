//! `find /sys/kernel/iommu_groups/ -type l`: which device is in which group.
//!
//! Each line is `/sys/kernel/iommu_groups/<group>/devices/<bdf>`, in the
//! kernel's directory order (not numeric). No IOMMU means an empty
//! directory (no lines) or no directory (`find: ... No such file or
//! directory`); both give no groups.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::text;
use super::ParseError;
use crate::model::Bdf;

/// IOMMU groups and their devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IommuGroups {
    /// Group number -> member devices, ascending.
    pub groups: BTreeMap<u32, Vec<Bdf>>,
    /// True when find reported that /sys/kernel/iommu_groups does not exist.
    pub dir_missing: bool,
}

impl IommuGroups {
    /// The group `bdf` is in.
    pub fn group_of(&self, bdf: Bdf) -> Option<u32> {
        self.groups
            .iter()
            .find(|(_, members)| members.contains(&bdf))
            .map(|(g, _)| *g)
    }
    /// The members of group `group` (empty for an unknown group).
    pub fn members(&self, group: u32) -> &[Bdf] {
        self.groups
            .get(&group)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }
    /// True when there is no group (no IOMMU active).
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// Parses the find output. Empty output means no groups.
///
/// # Errors
/// A [`ParseError`] naming the line for a line that is not a path under
/// `iommu_groups` with a numeric group and a PCI address, or an unknown
/// message.
pub fn parse(input: &str) -> Result<IommuGroups, ParseError> {
    let mut out = IommuGroups::default();
    for (n, line) in text::lines(input) {
        let t = line.trim();
        if t.is_empty() || text::is_kernel_line(line) {
            continue;
        }
        let cannot = || ParseError::at(n, format!("cannot read '{}'", text::snippet(t)));
        if t.starts_with("find:") {
            if t.contains("No such file or directory") {
                out.dir_missing = true;
                continue;
            }
            return Err(cannot());
        }
        let parts: Vec<&str> = t.split('/').filter(|p| !p.is_empty()).collect();
        let at = parts
            .iter()
            .position(|p| *p == "iommu_groups")
            .ok_or_else(cannot)?;
        let tail = parts.get(at + 1..).unwrap_or_default();
        match tail {
            // The directory itself (find without -type l).
            [] => {}
            [group, rest @ ..] => {
                let group: u32 = text::decimal(group).ok_or_else(|| {
                    ParseError::at(
                        n,
                        format!("'{}' is not a group number", text::snippet(group)),
                    )
                })?;
                let members = out.groups.entry(group).or_default();
                match rest {
                    [] | ["devices"] => {}
                    ["devices", dev] => {
                        let bdf: Bdf = dev.parse().map_err(|_| {
                            ParseError::at(
                                n,
                                format!("'{}' is not a PCI address", text::snippet(dev)),
                            )
                        })?;
                        if let Err(i) = members.binary_search(&bdf) {
                            members.insert(i, bdf);
                        }
                    }
                    // type, reserved_regions: other files of the group.
                    [_] => {}
                    _ => return Err(cannot()),
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
            include_str!(concat!("../../tests/fixtures/observe/iommu/", $name))
        };
    }

    fn b(s: &str) -> Bdf {
        s.parse().unwrap()
    }

    #[test]
    fn seed() {
        let g = parse(fixture!("seed.txt")).unwrap();
        assert_eq!(g.len(), 23);
        assert_eq!(g.members(4), &[b("00:1f.0"), b("00:1f.2"), b("00:1f.3")]);
        let nic = g.group_of(b("b5:00.0")).unwrap();
        assert_eq!(g.members(nic), &[b("b5:00.0")]);
        let port = g.group_of(b("b4:00.0")).unwrap();
        assert_ne!(port, nic);
        assert_eq!(g.group_of(b("b4:00.0")), Some(5));
        assert_eq!(g.group_of(b("ee:00.0")), None);
        assert!(!g.dir_missing);
    }

    #[test]
    fn sriov_vfs_alone() {
        let g = parse(fixture!("sriov.txt")).unwrap();
        for vf in ["c9:10.0", "c9:10.2", "c9:10.4"] {
            let grp = g.group_of(b(vf)).unwrap();
            assert_eq!(g.members(grp), &[b(vf)]);
        }
    }

    #[test]
    fn shared_group() {
        let g = parse(fixture!("shared-group.txt")).unwrap();
        let grp = g.group_of(b("07:02.0")).unwrap();
        assert_eq!(g.members(grp).len(), 4);
        assert_eq!(g.group_of(b("00:1e.0")), Some(grp));
    }

    #[test]
    fn no_groups() {
        let g = parse(fixture!("empty.txt")).unwrap();
        assert!(g.is_empty() && !g.dir_missing);
        for input in [
            fixture!("missing-dir-busybox.txt"),
            fixture!("missing-dir-gnu.txt"),
        ] {
            let g = parse(input).unwrap();
            assert!(g.is_empty() && g.dir_missing);
        }
    }

    #[test]
    fn other_find_shapes() {
        let input = "/sys/kernel/iommu_groups/\n/sys/kernel/iommu_groups/3\n/sys/kernel/iommu_groups/3/type\n/sys/kernel/iommu_groups/3/devices\n/sys/kernel/iommu_groups//3/devices/0000:00:03.0\r\n/sys/kernel/iommu_groups/4/devices\n";
        let g = parse(input).unwrap();
        assert_eq!(g.members(3), &[b("00:03.0")]);
        assert_eq!(g.members(4), &[] as &[Bdf]);
    }

    #[test]
    fn bad_lines() {
        let e = parse(fixture!("bad-group.txt")).unwrap_err();
        assert_eq!(e.to_string(), "line 2: 'x7' is not a group number");
        let e = parse(fixture!("bad-address.txt")).unwrap_err();
        assert_eq!(e.to_string(), "line 2: '0000:b5:00' is not a PCI address");
        assert!(parse("find: permission denied\n").is_err());
        assert!(parse("sh: find: not found\n").is_err());
        assert!(parse("/sys/kernel/iommu_groups/3/devices/0000:00:03.0/extra\n").is_err());
    }
}
