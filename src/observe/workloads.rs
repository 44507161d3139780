//! `workloads.txt`: what the agent's workload step did, one line per
//! workload in the order they ran:
//!
//! ```text
//! workload numa-pinned exit=0 seconds=1.52 timed_out=no
//! workload slow exit=137 seconds=30.01 timed_out=yes
//! workload other skipped: the topology checks failed
//! ```
//!
//! Each workload's output is its own file, `workload-<name>.log`.

use serde::{Deserialize, Serialize};

use super::text;
use super::ParseError;

/// What happened to one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadRun {
    /// Its name.
    pub name: String,
    /// How it ended.
    pub outcome: WorkloadOutcome,
}

/// How a workload ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadOutcome {
    /// It ran to its end (or was killed at its timeout).
    Ran {
        /// Its exit code (137 when killed).
        exit: i32,
        /// How long it ran.
        seconds: f64,
        /// Whether its timeout killed it.
        timed_out: bool,
    },
    /// It did not run, and why.
    Skipped(String),
}

/// Parses `workloads.txt`. Console noise (kernel messages) is skipped.
///
/// # Errors
/// A line that starts with `workload` but does not have the format.
pub fn parse(input: &str) -> Result<Vec<WorkloadRun>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in input.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim_end_matches('\r').trim();
        let Some(rest) = line.strip_prefix("workload ") else {
            continue;
        };
        let bad = || ParseError::at(n, format!("cannot read '{}'", text::snippet(line)));
        let (name, rest) = rest.split_once(' ').ok_or_else(bad)?;
        if let Some(why) = rest.strip_prefix("skipped: ") {
            out.push(WorkloadRun {
                name: name.to_string(),
                outcome: WorkloadOutcome::Skipped(why.to_string()),
            });
            continue;
        }
        let mut exit = None;
        let mut seconds = None;
        let mut timed_out = None;
        for field in rest.split_whitespace() {
            match field.split_once('=') {
                Some(("exit", v)) => exit = v.parse::<i32>().ok(),
                Some(("seconds", v)) => seconds = v.parse::<f64>().ok().filter(|s| s.is_finite()),
                Some(("timed_out", "yes")) => timed_out = Some(true),
                Some(("timed_out", "no")) => timed_out = Some(false),
                _ => return Err(bad()),
            }
        }
        match (exit, seconds, timed_out) {
            (Some(exit), Some(seconds), Some(timed_out)) => out.push(WorkloadRun {
                name: name.to_string(),
                outcome: WorkloadOutcome::Ran {
                    exit,
                    seconds,
                    timed_out,
                },
            }),
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_skips() {
        let r = parse(
            "workload a exit=0 seconds=1.5 timed_out=no\n[ 3.0] noise\nworkload b exit=137 seconds=30.01 timed_out=yes\nworkload c skipped: the topology checks failed\n",
        )
        .unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[1].outcome,
            WorkloadOutcome::Ran {
                exit: 137,
                seconds: 30.01,
                timed_out: true
            }
        );
        assert_eq!(
            r[2].outcome,
            WorkloadOutcome::Skipped("the topology checks failed".into())
        );
    }

    #[test]
    fn bad_lines_name_their_line() {
        for bad in [
            "workload a exit=x seconds=1 timed_out=no",
            "workload a",
            "workload a exit=0",
        ] {
            let e = parse(&format!("\n{bad}\n")).unwrap_err();
            assert_eq!(e.line, 2, "{bad}");
        }
    }
}
