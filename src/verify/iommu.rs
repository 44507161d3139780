//! IOMMU: active as the profile says, and each device alone in its IOMMU group.

use super::{neither, not_captured};
use crate::capture;
use crate::expect::Expected;
use crate::model::IommuModel;
use crate::observe::Observed;
use crate::report::Check;

pub(super) fn check(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    let groups = o.iommu_groups.as_ref();
    // The model's own evidence in the kernel log: Intel's DMAR line, or
    // the virtio-iommu driver's probe line.
    let evidence = |d: &crate::observe::dmesg::DmesgFacts| match e.iommu {
        Some(IommuModel::Virtio) => d.virtio_iommu_active,
        Some(IommuModel::Intel) => d.iommu_active,
        None => d.iommu_active || d.virtio_iommu_active,
    };
    let logged = o.dmesg.as_ref().map(evidence);
    let nonempty = groups.map(|g| !g.is_empty());
    let active = match (logged, nonempty) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
    };
    let want = match e.iommu {
        Some(IommuModel::Intel) => "an active Intel IOMMU (DMAR line or IOMMU groups)".to_string(),
        Some(IommuModel::Virtio) => {
            "an active virtio IOMMU (virtio_iommu's probe line or IOMMU groups)".to_string()
        }
        None => "no IOMMU".to_string(),
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
                if d.iommu_active {
                    seen.push("DMAR line present".to_string());
                } else if d.iommu_enabled {
                    seen.push("only 'DMAR: IOMMU enabled' (not active)".to_string());
                }
                if d.virtio_iommu_active {
                    seen.push("virtio_iommu probe line present".to_string());
                }
                if !d.iommu_active && !d.iommu_enabled && !d.virtio_iommu_active {
                    seen.push("no DMAR or virtio_iommu line".to_string());
                }
            }
            if let Some(g) = groups {
                seen.push(format!("{} IOMMU groups", g.len()));
            }
            out.push(Check::judge(
                "iommu.active",
                active == e.iommu.is_some(),
                want,
                seen.join(", "),
                match (e.iommu, active) {
                    (Some(_), true) => "the IOMMU is active".to_string(),
                    (Some(IommuModel::Intel), false) => "the IOMMU is not active (check intel_iommu=on on the guest kernel command line)".to_string(),
                    (Some(IommuModel::Virtio), false) => "the virtio IOMMU is not active (does the guest kernel have virtio_iommu, and was it loaded?)".to_string(),
                    (None, false) => "no IOMMU, as the profile says".to_string(),
                    (None, true) => "an IOMMU is active but the profile has none".to_string(),
                },
            ));
        }
    }
    if e.iommu.is_none() {
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
