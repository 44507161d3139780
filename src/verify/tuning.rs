//! Host tuning, checked on the host (never in the guest): libvirt's live
//! view of the domain (`host-domain.xml`) and QEMU's threads
//! (`host-threads.txt`, read only through a local connection).

use super::not_captured;
use crate::capture;
use crate::expect::Expected;
use crate::model::{CpuSet, NodeSet};
use crate::observe::Observed;
use crate::report::Check;

fn threads_missing() -> String {
    format!(
        "{} (QEMU's threads are read only through a local libvirt URI)",
        not_captured(&capture::HOST_THREADS)
    )
}

fn show<T: ToString>(x: Option<&T>) -> String {
    x.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
}

pub(super) fn check(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    let Some(t) = &e.tuning else { return };
    let live = o.host_domain.as_ref();
    let threads = o.host_threads.as_ref();
    let no_live = || not_captured(&capture::HOST_DOMAIN);
    for (vcpu, want) in &t.vcpupin {
        let id = format!("tuning.vcpu{vcpu}.pin");
        let expected = format!("vCPU {vcpu} pinned to host CPUs {want}");
        match live {
            None => out.push(Check::skip(id, expected, no_live())),
            Some(l) => {
                let got = l.vcpupin.get(vcpu);
                let ok = got == Some(want);
                out.push(Check::judge(
                    id,
                    ok,
                    expected,
                    format!("libvirt: vcpupin {}", show(got)),
                    if ok {
                        format!("libvirt pins vCPU {vcpu} as asked")
                    } else {
                        format!("libvirt does not pin vCPU {vcpu} as asked")
                    },
                ));
            }
        }
        let id = format!("tuning.vcpu{vcpu}.thread");
        let expected = format!("QEMU's thread of vCPU {vcpu} allowed on host CPUs {want} only");
        match threads {
            None => out.push(Check::skip(id, expected, threads_missing())),
            Some(q) => {
                let th = q.vcpu(*vcpu);
                let got = th.and_then(|x| x.cpus_allowed.as_ref());
                let ok = got == Some(want);
                out.push(Check::judge(
                    id,
                    ok,
                    expected,
                    match th {
                        Some(x) => format!("'{}': Cpus_allowed_list {}", x.name, show(got)),
                        None => format!("no thread named CPU {vcpu}/..."),
                    },
                    if ok {
                        format!("vCPU {vcpu} runs only on host CPUs {want}")
                    } else {
                        format!("vCPU {vcpu}'s thread may run elsewhere than host CPUs {want}")
                    },
                ));
            }
        }
    }
    if let Some(want) = &t.emulatorpin {
        let expected = format!("emulator threads pinned to host CPUs {want}");
        match live {
            None => out.push(Check::skip(
                "tuning.emulator.pin",
                expected.clone(),
                no_live(),
            )),
            Some(l) => {
                let got = l.emulatorpin.as_ref();
                let ok = got == Some(want);
                out.push(Check::judge(
                    "tuning.emulator.pin",
                    ok,
                    expected.clone(),
                    format!("libvirt: emulatorpin {}", show(got)),
                    if ok {
                        "libvirt pins the emulator threads as asked".to_string()
                    } else {
                        "libvirt does not pin the emulator threads as asked".to_string()
                    },
                ));
            }
        }
        match threads {
            None => out.push(Check::skip(
                "tuning.emulator.thread",
                expected,
                threads_missing(),
            )),
            Some(q) => {
                let all: Vec<(u32, String, Option<&CpuSet>)> = q
                    .emulator()
                    .map(|(tid, th)| (tid, th.name.clone(), th.cpus_allowed.as_ref()))
                    .collect();
                let bad: Vec<String> = all
                    .iter()
                    .filter(|(_, _, c)| *c != Some(want))
                    .map(|(tid, name, c)| format!("{tid} '{name}' on {}", show(*c)))
                    .collect();
                let ok = !all.is_empty() && bad.is_empty();
                out.push(Check::judge(
                    "tuning.emulator.thread",
                    ok,
                    expected,
                    if all.is_empty() {
                        "no emulator thread".to_string()
                    } else if bad.is_empty() {
                        format!("{} emulator threads, all on {want}", all.len())
                    } else {
                        format!("threads elsewhere: {}", bad.join(", "))
                    },
                    if ok {
                        "QEMU's emulator threads run only where pinned".to_string()
                    } else {
                        "some of QEMU's emulator threads may run elsewhere".to_string()
                    },
                ));
            }
        }
    }
    if let Some((mode, nodeset)) = &t.numatune {
        let l = live.and_then(|l| l.numatune.as_ref());
        for (id, expected, got, ok) in [
            (
                "tuning.numatune.mode",
                format!("memory mode {mode}"),
                l.map(|p| format!("libvirt: mode {}", p.mode)),
                l.is_some_and(|p| p.mode == mode.name()),
            ),
            (
                "tuning.numatune.nodeset",
                format!("memory from host nodes {nodeset}"),
                l.map(|p| format!("libvirt: nodeset {}", show(p.nodeset.as_ref()))),
                l.is_some_and(|p| p.nodeset.as_ref() == Some(nodeset)),
            ),
        ] {
            match live {
                None => out.push(Check::skip(id, expected, no_live())),
                Some(_) => out.push(Check::judge(
                    id,
                    ok,
                    expected,
                    got.unwrap_or_else(|| "libvirt: no <numatune>".into()),
                    if ok {
                        format!("libvirt has the {id} asked for")
                    } else {
                        format!("libvirt's {id} differs from the profile's")
                    },
                )),
            }
        }
        if mode.confines_threads() {
            mems_allowed(nodeset, o, out);
        }
    }
    for (cell, mode, nodeset) in &t.memnodes {
        let id = format!("tuning.cell{cell}.memnode");
        let expected = format!("cell {cell}: memory {mode} from host nodes {nodeset}");
        match live {
            None => out.push(Check::skip(id, expected, no_live())),
            Some(l) => {
                let got = l.memnodes.get(&cell.0);
                let ok = got
                    .is_some_and(|p| p.mode == mode.name() && p.nodeset.as_ref() == Some(nodeset));
                out.push(Check::judge(
                    id,
                    ok,
                    expected,
                    got.map(|p| format!("libvirt: {} from {}", p.mode, show(p.nodeset.as_ref())))
                        .unwrap_or_else(|| "libvirt: no memnode".into()),
                    if ok {
                        format!("libvirt places cell {cell}'s memory as asked")
                    } else {
                        format!("libvirt does not place cell {cell}'s memory as asked")
                    },
                ));
            }
        }
    }
    for (cell, size) in &t.hugepages {
        let id = format!("tuning.cell{cell}.hugepages");
        let expected = format!("cell {cell} backed by host {size} pages");
        match live {
            None => out.push(Check::skip(id, expected, no_live())),
            Some(l) => {
                let got: Vec<u64> = l
                    .hugepages
                    .iter()
                    .filter(|(_, cells)| cells.as_ref().map_or(true, |c| c.contains(cell.0)))
                    .map(|(kib, _)| *kib)
                    .collect();
                let ok = got == [size.kib()];
                out.push(Check::judge(
                    id,
                    ok,
                    expected,
                    if got.is_empty() {
                        "libvirt: no huge pages for it".to_string()
                    } else {
                        format!(
                            "libvirt: pages of {} KiB",
                            got.iter()
                                .map(|k| k.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                    if ok {
                        format!("cell {cell} is backed by host {size} pages")
                    } else {
                        format!("cell {cell} is not backed by host {size} pages")
                    },
                ));
            }
        }
    }
}

/// With a strict memory policy, every QEMU thread may allocate only from
/// the nodeset (libvirt confines it through the cpuset cgroup).
fn mems_allowed(nodeset: &NodeSet, o: &Observed, out: &mut Vec<Check>) {
    let id = "tuning.numatune.threads";
    let expected = format!("every QEMU thread's memory from host nodes {nodeset}");
    let Some(q) = &o.host_threads else {
        out.push(Check::skip(id, expected, threads_missing()));
        return;
    };
    let bad: Vec<String> = q
        .threads
        .iter()
        .filter(|(_, t)| t.mems_allowed.as_ref() != Some(nodeset))
        .map(|(tid, t)| format!("{tid} '{}' on {}", t.name, show(t.mems_allowed.as_ref())))
        .collect();
    let ok = !q.threads.is_empty() && bad.is_empty();
    out.push(Check::judge(
        id,
        ok,
        expected,
        if q.threads.is_empty() {
            "no threads".to_string()
        } else if ok {
            format!("{} threads, Mems_allowed_list {nodeset}", q.threads.len())
        } else {
            format!("threads elsewhere: {}", bad.join(", "))
        },
        if ok {
            "QEMU allocates only from the host nodes asked for".to_string()
        } else {
            "QEMU may allocate from other host nodes".to_string()
        },
    ));
}
