//! The nested step: each assigned device bound to vfio-pci, the nested guest booted, and each device visible in it.

use super::not_captured;
use crate::capture;
use crate::expect::Expected;
use crate::observe::Observed;
use crate::report::Check;

pub(super) fn check(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    if e.nested.is_empty() {
        return;
    }
    let why = not_captured(&capture::NESTED);
    for a in &e.nested {
        let id = format!("nested.dev.{}.vfio", a.id);
        let want = format!(
            "{} ({}) bound to vfio-pci with /dev/vfio/<group>",
            a.id,
            a.bdf.short()
        );
        let Some(n) = &o.nested else {
            out.push(Check::skip(id, want, why.clone()));
            continue;
        };
        let (ok, observed) = match n.devices.iter().find(|d| d.id == a.id) {
            None => (false, format!("the probe did not report {}", a.id)),
            Some(d) => (
                d.driver.as_deref() == Some("vfio-pci") && d.vfio_dev,
                format!(
                    "driver {}, IOMMU group {}, /dev/vfio node {}",
                    d.driver.as_deref().unwrap_or("none"),
                    d.group
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "none".into()),
                    if d.vfio_dev { "present" } else { "missing" }
                ),
            ),
        };
        out.push(Check::judge(
            id,
            ok,
            want,
            observed,
            if ok {
                format!("{} is ready for assignment", a.id)
            } else {
                format!("{} could not be handed to vfio-pci", a.id)
            },
        ));
    }
    let booted = match &o.nested {
        None => {
            out.push(Check::skip(
                "nested.boot",
                "the nested guest boots",
                why.clone(),
            ));
            None
        }
        Some(n) => {
            let (ok, observed) = match (&n.boot, &o.nested_lspci) {
                (Some(Ok(())), Some(_)) => (true, "booted; its lspci was captured".to_string()),
                (Some(Ok(())), None) => (
                    false,
                    format!("booted, but {} is missing", capture::NESTED_LSPCI.file),
                ),
                (Some(Err(why)), _) => (false, format!("did not boot: {why}")),
                (None, _) => (false, "the probe did not say whether it booted".to_string()),
            };
            out.push(Check::judge(
                "nested.boot",
                ok,
                "a nested guest with the assigned devices boots inside the virtual host",
                observed,
                if ok {
                    "the nested guest booted".to_string()
                } else {
                    "the nested guest did not boot".to_string()
                },
            ));
            Some(ok)
        }
    };
    for a in &e.nested {
        let id = format!("nested.dev.{}.visible", a.id);
        let want = format!(
            "[{}] in the nested guest ({}, {})",
            a.pci_id, a.id, a.nova_type
        );
        let Some(list) = o.nested_lspci.as_ref().filter(|_| booted == Some(true)) else {
            out.push(Check::skip(
                id,
                want,
                format!(
                    "{} (the nested guest's lspci)",
                    not_captured(&capture::NESTED_LSPCI)
                ),
            ));
            continue;
        };
        // As many devices with this id as were assigned with it.
        let wanted = e.nested.iter().filter(|x| x.pci_id == a.pci_id).count();
        let seen = list.iter().filter(|d| d.id == a.pci_id).count();
        out.push(Check::judge(
            id,
            seen >= wanted,
            want,
            format!("{seen} device(s) [{}] in the nested guest", a.pci_id),
            if seen >= wanted {
                format!("the nested guest sees {}", a.id)
            } else {
                format!("the nested guest does not see {}", a.id)
            },
        ));
    }
    // Through libvirt: each device back on its own driver once the nested
    // domain is gone (managed='yes').
    if e.libvirt {
        for a in &e.nested {
            let id = format!("nested.dev.{}.released", a.id);
            let want = format!("{} back on its own driver after the nested guest", a.id);
            let Some(n) = &o.nested else {
                out.push(Check::skip(id, want, why.clone()));
                continue;
            };
            let before = n
                .before
                .iter()
                .find(|(d, _)| d == &a.id)
                .map(|(_, v)| v.clone());
            let after = n
                .released
                .iter()
                .find(|(d, _)| d == &a.id)
                .map(|(_, v)| v.clone());
            let ok = matches!((&before, &after), (Some(b), Some(r)) if b == r && r.as_deref() != Some("vfio-pci"));
            let name = |d: &Option<Option<String>>| match d {
                None => "not recorded".to_string(),
                Some(None) => "no driver".to_string(),
                Some(Some(d)) => d.clone(),
            };
            out.push(Check::judge(
                id,
                ok,
                want,
                format!("before: {}, after: {}", name(&before), name(&after)),
                if ok {
                    format!("libvirt gave {} back to its driver", a.id)
                } else {
                    format!("{} was not given back to its own driver", a.id)
                },
            ));
        }
    }
}
