//! Workloads: each ran and exited 0 (`workload.<name>`); the tail of its
//! output when it did not.

use super::not_captured;
use crate::capture;
use crate::expect::Expected;
use crate::observe::workloads::WorkloadOutcome;
use crate::observe::Observed;
use crate::report::Check;

fn tail(o: &Observed, name: &str) -> String {
    match o.workload_tails.get(name) {
        Some(lines) if !lines.is_empty() => {
            let mut s = String::from("; its output ended:");
            for l in lines {
                s.push_str("\n  | ");
                s.push_str(l);
            }
            s
        }
        _ => "; it printed nothing".into(),
    }
}

pub(super) fn check(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    for w in &e.workloads {
        let id = format!("workload.{}", w.name);
        let want = format!("`{}` exits 0 within {} s", w.command, w.timeout_secs);
        let Some(runs) = &o.workloads else {
            out.push(Check::skip(id, want, not_captured(&capture::WORKLOADS)));
            continue;
        };
        match runs.iter().find(|r| r.name == w.name).map(|r| &r.outcome) {
            None => out.push(Check::judge(
                id,
                false,
                want,
                "the agent did not run it",
                format!("workload {} did not run", w.name),
            )),
            Some(WorkloadOutcome::Skipped(why)) => {
                out.push(Check::skip(id, want, format!("not run: {why}")))
            }
            Some(WorkloadOutcome::Ran {
                exit,
                seconds,
                timed_out,
            }) => {
                let ok = *exit == 0 && !timed_out;
                let observed = if *timed_out {
                    format!(
                        "killed after its {} s timeout{}",
                        w.timeout_secs,
                        tail(o, &w.name)
                    )
                } else if ok {
                    format!("exit 0 after {seconds:.1} s")
                } else {
                    format!("exit {exit} after {seconds:.1} s{}", tail(o, &w.name))
                };
                out.push(Check::judge(
                    id,
                    ok,
                    want,
                    observed,
                    if ok {
                        format!("workload {} passed", w.name)
                    } else if *timed_out {
                        format!("workload {} timed out", w.name)
                    } else {
                        format!("workload {} failed", w.name)
                    },
                ));
            }
        }
    }
}
