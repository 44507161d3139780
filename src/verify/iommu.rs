//! IOMMU: active as the profile says, and each device alone in its IOMMU group.

use super::{neither, not_captured};
use crate::capture;
use crate::expect::Expected;
use crate::observe::Observed;
use crate::report::Check;

pub(super) fn check(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    let groups = o.iommu_groups.as_ref();
    let dmar = o.dmesg.as_ref().map(|d| d.iommu_active);
    let nonempty = groups.map(|g| !g.is_empty());
    let active = match (dmar, nonempty) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
    };
    let want = if e.iommu {
        "an active Intel IOMMU (DMAR line or IOMMU groups)"
    } else {
        "no IOMMU"
    };
    match active {
        None => out.push(Check::skip(
            "iommu.active",
            want,
            neither(&capture::DMESG, &capture::IOMMU_GROUPS),
        )),
        Some(active) => {
            let mut seen = Vec::new();
            if let Some(d) = &o.dmesg {
                seen.push(if d.iommu_active {
                    "DMAR line present".to_string()
                } else if d.iommu_enabled {
                    "only 'DMAR: IOMMU enabled' (not active)".to_string()
                } else {
                    "no DMAR line".to_string()
                });
            }
            if let Some(g) = groups {
                seen.push(format!("{} IOMMU groups", g.len()));
            }
            out.push(Check::judge(
                "iommu.active",
                active == e.iommu,
                want,
                seen.join(", "),
                match (e.iommu, active) {
                    (true, true) => "the IOMMU is active".to_string(),
                    (true, false) => "the IOMMU is not active (check intel_iommu=on on the guest kernel command line)".to_string(),
                    (false, false) => "no IOMMU, as the profile says".to_string(),
                    (false, true) => "an IOMMU is active but the profile has none".to_string(),
                },
            ));
        }
    }
    if !e.iommu {
        return;
    }
    for d in e.devices.iter().filter(|d| d.isolated) {
        let id = format!("iommu.dev.{}.isolated", d.bdf.short());
        let want = format!("{} alone in its IOMMU group", d.bdf.short());
        let Some(g) = groups else {
            out.push(Check::skip(id, want, not_captured(&capture::IOMMU_GROUPS)));
            continue;
        };
        let (ok, observed) = match g.group_of(d.bdf) {
            None => (false, format!("{} is in no IOMMU group", d.bdf.short())),
            Some(n) => {
                let members = g.members(n);
                let others: Vec<String> = members
                    .iter()
                    .filter(|b| **b != d.bdf)
                    .map(|b| b.short())
                    .collect();
                if others.is_empty() {
                    (true, format!("group {n}: {} only", d.bdf.short()))
                } else {
                    (false, format!("group {n} also holds {}", others.join(", ")))
                }
            }
        };
        out.push(Check::judge(
            id,
            ok,
            want,
            observed,
            if ok {
                format!("{} can be assigned on its own", d.id)
            } else {
                format!(
                    "{} shares its IOMMU group, so it cannot be assigned alone",
                    d.id
                )
            },
        ));
    }
}
