//! The phases of one boot, as plain code: events and time in, decisions
//! out. No I/O, no runtime: [`Watch`] is told what the console showed and
//! when, and says when the boot times out and why.
//!
//! | phase    | from                      | until          | budget                         | quiet limit |
//! |----------|---------------------------|----------------|--------------------------------|-------------|
//! | `boot`   | resume                    | the `init` marker | `--boot-timeout` (120 s)    | none: firmware and a `quiet` kernel print little |
//! | `probe`  | `init`                    | `done`         | `--probe-timeout` (180 s)      | a third of it (60 s): the agent prints all along |
//! | `nested` | the `nested` marker       | `done`         | two nested runs + 30 s         | 30 s: the agent's heartbeat comes every 5 s |
//!
//! A timeout of any phase is worth another boot ([`should_retry`]): 8-vCPU
//! TCG guests hang before /init in a few percent of boots and get stuck
//! during the nested step about once in 6-10.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::guest::agent::{Mode, NESTED_HEARTBEAT_SECS};
use crate::guest::protocol::ConsoleEvent;

/// Which phase a boot is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseKind {
    /// From resume until the agent's `init` marker.
    Boot,
    /// From `init` until `done`.
    Probe,
    /// From the `nested` marker until `done`.
    Nested,
    /// From the `gate` marker until `done`: the user's workloads.
    Workload,
}

impl fmt::Display for PhaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PhaseKind::Boot => "boot",
            PhaseKind::Probe => "probe",
            PhaseKind::Nested => "nested",
            PhaseKind::Workload => "workload",
        })
    }
}

/// The user's per-phase timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From resume until the agent starts.
    pub boot: Duration,
    /// From the agent's start until the captures are done.
    pub probe: Duration,
    /// The workloads' own timeouts together (the agent kills each at its
    /// own; the phase allows them all plus [`WORKLOAD_SLACK`]).
    pub workloads: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            boot: Duration::from_secs(120),
            probe: Duration::from_secs(180),
            workloads: Duration::ZERO,
        }
    }
}

/// The default timeouts of a guest with a system disk (the Debian guest:
/// systemd and libvirtd start before the agent can say anything; under
/// TCG on a loaded 2-core host its agent was seen to start at 57 s of
/// uptime and libvirtd to answer at 104 s).
pub const DISK_GUEST_TIMEOUTS: Timeouts = Timeouts {
    boot: Duration::from_secs(300),
    probe: Duration::from_secs(600),
    workloads: Duration::ZERO,
};

/// What the workload phase allows beyond the workloads' own timeouts: the
/// host's word at the gate, mounting, printing the results.
pub const WORKLOAD_SLACK: Duration = Duration::from_secs(180);

/// How long the console may stay quiet while workloads run, where the
/// agent prints an `alive` marker every
/// [`WORKLOAD_HEARTBEAT_SECS`](crate::guest::agent::WORKLOAD_HEARTBEAT_SECS)
/// (a workload that prints nothing for hours is fine).
pub const WORKLOAD_QUIET: Duration =
    Duration::from_secs(6 * crate::guest::agent::WORKLOAD_HEARTBEAT_SECS as u64);

impl Timeouts {
    /// Seconds one run of the nested guest may take inside the virtual
    /// host: a quarter of the probe timeout
    /// ([`DEFAULT_NESTED_TIMEOUT_SECS`](crate::guest::agent::DEFAULT_NESTED_TIMEOUT_SECS)
    /// with the default 180 s), at least 10 and at most
    /// [`MAX_NESTED_RUN_SECS`]. The agent kills a run that takes longer and
    /// tries once more. It grows with `--probe-timeout`: on a 2-core TCG
    /// host shared with other guests (load 10 and more) one nested run was
    /// seen to take over 45 s.
    pub fn nested_run_secs(&self) -> u32 {
        u32::try_from(self.probe.as_secs() / 4)
            .unwrap_or(u32::MAX)
            .clamp(10, MAX_NESTED_RUN_SECS)
    }

    /// How long the console may stay quiet in the probe phase: a third of
    /// the probe timeout (60 s by default), at least 10 s. The agent prints
    /// every capture as it goes; its longest silences are loading modules
    /// and bringing CPUs online, a few seconds even with 8 guests on 2
    /// cores.
    pub fn probe_quiet(&self) -> Duration {
        (self.probe / 3)
            .max(Duration::from_secs(10))
            .min(self.probe)
    }

    /// The nested phase's budget: the agent runs the nested guest at most
    /// twice under its own timeout, plus binding devices and printing the
    /// files.
    pub fn nested_budget(&self) -> Duration {
        Duration::from_secs(2 * u64::from(self.nested_run_secs()) + 30)
    }
}

/// The longest one nested run may be given (with `--probe-timeout 1200`).
pub const MAX_NESTED_RUN_SECS: u32 = 300;

/// How long the console may stay quiet during the nested step, where the
/// agent prints an `alive` marker every [`NESTED_HEARTBEAT_SECS`].
pub const NESTED_QUIET: Duration = Duration::from_secs(6 * NESTED_HEARTBEAT_SECS as u64);

/// A phase that ran out of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The phase.
    pub phase: PhaseKind,
    /// Seconds waited: the phase's budget, or its quiet limit.
    pub secs: u64,
    /// Whether it was the quiet limit (the console printed nothing for
    /// `secs`) rather than the whole budget.
    pub quiet: bool,
    /// What was awaited, in words.
    pub what: String,
}

/// What the console's latest output means for the boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Keep reading.
    Continue,
    /// The agent is done (probe mode), or a shell owns the console (shell
    /// mode): stop reading.
    Finished,
    /// The kernel panicked: stop now.
    Panicked(String),
}

/// The clock of one boot: the phase it is in and when it times out.
#[derive(Debug, Clone)]
pub struct Watch {
    timeouts: Timeouts,
    mode: Mode,
    phase: PhaseKind,
    /// When the phase runs out of its budget.
    until: Instant,
    /// When the console last printed something.
    heard: Instant,
}

impl Watch {
    /// A boot that was resumed at `now`: the boot phase.
    pub fn start(timeouts: Timeouts, mode: Mode, now: Instant) -> Watch {
        Watch {
            timeouts,
            mode,
            phase: PhaseKind::Boot,
            until: now + timeouts.boot,
            heard: now,
        }
    }

    /// The phase the boot is in.
    pub fn phase(&self) -> PhaseKind {
        self.phase
    }

    fn budget(&self) -> Duration {
        match self.phase {
            PhaseKind::Boot => self.timeouts.boot,
            PhaseKind::Probe => self.timeouts.probe,
            PhaseKind::Nested => self.timeouts.nested_budget(),
            PhaseKind::Workload => self.timeouts.workloads + WORKLOAD_SLACK,
        }
    }

    fn quiet(&self) -> Option<Duration> {
        match self.phase {
            PhaseKind::Boot => None,
            PhaseKind::Probe => Some(self.timeouts.probe_quiet()),
            PhaseKind::Nested => Some(NESTED_QUIET),
            PhaseKind::Workload => Some(WORKLOAD_QUIET),
        }
    }

    fn what(&self) -> &'static str {
        match self.phase {
            PhaseKind::Boot => "waiting for the kernel to start the agent",
            PhaseKind::Probe => "waiting for the agent's captures",
            PhaseKind::Nested => {
                "waiting for the nested step (the agent prints a heartbeat while it runs)"
            }
            PhaseKind::Workload => {
                "waiting for the workloads (the agent prints a heartbeat while they run)"
            }
        }
    }

    fn enter(&mut self, phase: PhaseKind, now: Instant) {
        self.phase = phase;
        self.until = now + self.budget();
        self.heard = now;
    }

    /// The console printed something at `now`.
    pub fn heard(&mut self, now: Instant) {
        self.heard = now;
    }

    /// A console event seen at `now`.
    pub fn event(&mut self, ev: &ConsoleEvent, now: Instant) -> Step {
        match ev {
            ConsoleEvent::InitStarted => self.enter(PhaseKind::Probe, now),
            ConsoleEvent::NestedStarted(_) => self.enter(PhaseKind::Nested, now),
            ConsoleEvent::Gate => self.enter(PhaseKind::Workload, now),
            ConsoleEvent::KernelPanic(line) => return Step::Panicked(line.clone()),
            ConsoleEvent::Done if self.mode == Mode::Probe => return Step::Finished,
            ConsoleEvent::ShellReady if self.mode == Mode::Shell => return Step::Finished,
            _ => {}
        }
        Step::Continue
    }

    /// When the boot times out if nothing else happens.
    pub fn deadline(&self) -> Instant {
        match self.quiet() {
            Some(q) => self.until.min(self.heard + q),
            None => self.until,
        }
    }

    /// Why the boot timed out, once [`deadline`](Self::deadline) passed.
    pub fn expired(&self) -> Expired {
        match self.quiet() {
            Some(q) if self.heard + q < self.until => Expired {
                phase: self.phase,
                secs: q.as_secs(),
                quiet: true,
                what: format!(
                    "the console printed nothing for {} s; {}",
                    q.as_secs(),
                    self.what()
                ),
            },
            _ => Expired {
                phase: self.phase,
                secs: self.budget().as_secs(),
                quiet: false,
                what: self.what().to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn boot_phase_has_no_quiet_limit() {
        let t0 = Instant::now();
        let mut w = Watch::start(Timeouts::default(), Mode::Probe, t0);
        assert_eq!(w.phase(), PhaseKind::Boot);
        assert_eq!(w.deadline(), t0 + secs(120));
        w.heard(t0 + secs(100));
        assert_eq!(
            w.deadline(),
            t0 + secs(120),
            "output does not extend the boot budget"
        );
        let e = w.expired();
        assert_eq!((e.phase, e.secs, e.quiet), (PhaseKind::Boot, 120, false));
    }

    #[test]
    fn probe_phase_times_out_on_silence_or_budget() {
        let t0 = Instant::now();
        let mut w = Watch::start(Timeouts::default(), Mode::Probe, t0);
        assert_eq!(
            w.event(&ConsoleEvent::InitStarted, t0 + secs(5)),
            Step::Continue
        );
        assert_eq!(w.phase(), PhaseKind::Probe);
        assert_eq!(
            w.deadline(),
            t0 + secs(5 + 60),
            "a third of 180 s of silence"
        );
        let e = w.expired();
        assert_eq!((e.phase, e.secs, e.quiet), (PhaseKind::Probe, 60, true));
        assert!(e.what.contains("printed nothing for 60 s"), "{}", e.what);
        // Talking all along: the whole budget ends it.
        for s in (10..=180).step_by(10) {
            w.heard(t0 + secs(s));
        }
        assert_eq!(w.deadline(), t0 + secs(185));
        let e = w.expired();
        assert_eq!((e.secs, e.quiet), (180, false));
    }

    #[test]
    fn nested_phase_wants_heartbeats() {
        let t0 = Instant::now();
        let t = Timeouts {
            boot: secs(120),
            probe: secs(180),
            workloads: Duration::ZERO,
        };
        let mut w = Watch::start(t, Mode::Probe, t0);
        w.event(&ConsoleEvent::InitStarted, t0 + secs(5));
        w.event(&ConsoleEvent::NestedStarted(1), t0 + secs(10));
        assert_eq!(w.phase(), PhaseKind::Nested);
        assert_eq!(w.deadline(), t0 + secs(40));
        assert_eq!(t.nested_run_secs(), 45);
        assert_eq!(t.nested_budget(), secs(120));
        let e = w.expired();
        assert_eq!((e.phase, e.secs, e.quiet), (PhaseKind::Nested, 30, true));
    }

    #[test]
    fn workload_phase_allows_long_quiet_work_with_heartbeats() {
        let t0 = Instant::now();
        let t = Timeouts {
            workloads: secs(1800),
            ..Timeouts::default()
        };
        let mut w = Watch::start(t, Mode::Probe, t0);
        w.event(&ConsoleEvent::InitStarted, t0);
        w.event(&ConsoleEvent::Gate, t0 + secs(10));
        assert_eq!(w.phase(), PhaseKind::Workload);
        // 5 minutes of heartbeats only: still within the phase.
        for s in (20..=310).step_by(10) {
            w.heard(t0 + secs(s));
        }
        assert_eq!(w.deadline(), t0 + secs(310 + 60));
        assert!(w.deadline() < t0 + secs(10 + 1800 + 180));
        let e = w.expired();
        assert_eq!((e.phase, e.secs, e.quiet), (PhaseKind::Workload, 60, true));
    }

    #[test]
    fn short_probe_timeouts_are_clamped() {
        let t = Timeouts {
            boot: secs(20),
            probe: secs(30),
            workloads: Duration::ZERO,
        };
        assert_eq!(t.probe_quiet(), secs(10));
        assert_eq!(t.nested_run_secs(), 10);
        let long = Timeouts {
            boot: secs(600),
            probe: secs(600),
            workloads: Duration::ZERO,
        };
        assert_eq!(
            long.nested_run_secs(),
            150,
            "a longer probe timeout, a longer nested run"
        );
        assert_eq!(
            crate::guest::agent::DEFAULT_NESTED_TIMEOUT_SECS,
            Timeouts::default().nested_run_secs()
        );
        let t = Timeouts {
            boot: secs(20),
            probe: secs(5),
            workloads: Duration::ZERO,
        };
        assert_eq!(t.probe_quiet(), secs(5), "never longer than the phase");
    }

    #[test]
    fn end_and_panic_decisions() {
        let t0 = Instant::now();
        let mut w = Watch::start(Timeouts::default(), Mode::Probe, t0);
        assert_eq!(
            w.event(
                &ConsoleEvent::KernelPanic("Kernel panic - not syncing".into()),
                t0
            ),
            Step::Panicked("Kernel panic - not syncing".into())
        );
        assert_eq!(w.event(&ConsoleEvent::Done, t0), Step::Finished);
        assert_eq!(w.event(&ConsoleEvent::ShellReady, t0), Step::Continue);
        let mut s = Watch::start(Timeouts::default(), Mode::Shell, t0);
        assert_eq!(s.event(&ConsoleEvent::Done, t0), Step::Continue);
        assert_eq!(s.event(&ConsoleEvent::ShellReady, t0), Step::Finished);
    }
}
