//! Guest huge pages: every node holds the pages of every size the profile
//! asks for (0 where it asks for none).

use super::not_captured;
use crate::capture;
use crate::expect::Expected;
use crate::observe::Observed;
use crate::report::Check;

pub(super) fn check(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    for h in &e.hugepages {
        let id = format!("hugepages.node{}.{}", h.node, h.size.sysfs_name());
        let want = format!(
            "{} pages of {} on node {}",
            h.count,
            h.size.sysfs_name(),
            h.node
        );
        let Some(f) = &o.hugepages else {
            out.push(Check::skip(id, want, not_captured(&capture::HUGEPAGES)));
            continue;
        };
        let got = f.get(h.node, h.size.kib());
        let ok = got == Some(h.count);
        out.push(Check::judge(
            id,
            ok,
            want,
            match got {
                Some(n) => format!("nr_hugepages {n}"),
                None => format!("node {} shows no {} pages", h.node, h.size.sysfs_name()),
            },
            if ok {
                format!("node {} holds its {} pages", h.node, h.size)
            } else {
                format!(
                    "node {} does not hold the {} pages asked for (the kernel says why in dmesg: HugeTLB)",
                    h.node, h.size
                )
            },
        ));
    }
}
