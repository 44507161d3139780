//! SR-IOV: each physical function has the VFs the profile asks for.

use super::not_captured;
use crate::capture;
use crate::expect::Expected;
use crate::observe::Observed;
use crate::report::Check;

pub(super) fn check(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    for d in e.devices.iter().filter(|d| d.vfs > 0) {
        let id = format!("sriov.{}.numvfs", d.bdf.short());
        let want = format!(
            "{} VFs enabled on {} (sriov_totalvfs at least {})",
            d.vfs, d.id, d.vfs
        );
        let Some(map) = &o.sriov else {
            out.push(Check::skip(id, want, not_captured(&capture::SRIOV)));
            continue;
        };
        let (ok, observed) = match map.get(&d.bdf) {
            None => (
                false,
                format!(
                    "{} reports no SR-IOV capability (is the igb driver loaded?)",
                    d.bdf.short()
                ),
            ),
            Some(s) => (
                s.numvfs == d.vfs && s.totalvfs >= d.vfs,
                format!("numvfs={} totalvfs={}", s.numvfs, s.totalvfs),
            ),
        };
        out.push(Check::judge(
            id,
            ok,
            want,
            observed,
            if ok {
                format!("{} has its {} VFs", d.id, d.vfs)
            } else {
                format!("{} does not have the VFs asked for", d.id)
            },
        ));
    }
}
