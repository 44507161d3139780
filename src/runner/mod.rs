//! The runner: a resolved topology to a [`Report`], by booting a transient
//! domain on a [`Host`] and reading what its guest's agent prints.
//!
//! - [`phase`]: the phases of one boot as plain code ([`phase::Watch`]);
//! - [`session`]: one boot (start paused, console, resume, read, destroy on
//!   every path);
//! - this module: preparing a boot ([`prepare`]: agent parameters, the
//!   guest kind's boot files staged on the host, the domain), retries, the
//!   verdict and the run directory ([`run_profile`]);
//! - [`many`]: many profiles at once (jobs, cancellation, progress).
//!
//! The domain is started paused, its console stream opened, then resumed,
//! so no byte of output is missed, even against a remote libvirt URI.

pub mod many;
pub mod phase;
pub mod session;

#[cfg(test)]
mod tests;

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::capture::CaptureError;
use crate::expect::expect;
use crate::guest::agent::{modules_for, AgentError, AgentParams, Mode};
use crate::guest::protocol::{ConsoleError, Nonce};
use crate::guest::{GuestError, GuestKind};
use crate::host::{Host, HostError, HostFacts};
use crate::model::{Accel, Topology};
use crate::observe::{ObserveError, Observed};
use crate::report::{Check, GuestStepError, Report, Timings, Verdict};
use crate::verify::verify;
use crate::xml::domain::{Domain, DomainXmlError};
use crate::xml::render::{render, BootSpec};
pub use phase::{PhaseKind, Timeouts};
pub use session::Teardown;

/// Why a run ended without a verdict from checks.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The host (libvirt) refused or failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A phase took too long.
    #[error("timed out after {secs} s in the {phase} phase ({what}){tail}")]
    Timeout {
        /// The phase.
        phase: PhaseKind,
        /// Seconds waited.
        secs: u64,
        /// What was awaited.
        what: String,
        /// Last console lines, formatted.
        tail: String,
    },
    /// The guest kernel panicked.
    #[error("the guest kernel panicked: {line}{tail}")]
    Panic {
        /// The panic line.
        line: String,
        /// Last console lines, formatted.
        tail: String,
    },
    /// The console closed before the end marker: QEMU died or the guest
    /// powered off early.
    #[error("the guest died before the agent finished ({why}){tail}")]
    Died {
        /// What was seen.
        why: String,
        /// Last console lines, formatted.
        tail: String,
    },
    /// The console output could not be turned into captures.
    #[error("the console output is incomplete")]
    Console(#[from] ConsoleError),
    /// The run directory could not be written.
    #[error("cannot write {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The guest kind cannot boot this topology.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// The agent's parameters cannot be written.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The domain XML cannot be written.
    #[error(transparent)]
    Xml(#[from] DomainXmlError),
    /// The captures cannot be written.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// A captured file could not be parsed.
    #[error(transparent)]
    Observe(#[from] ObserveError),
    /// A task of ours panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

impl BootError {
    /// Whether booting once more may help: a phase timed out (8-vCPU TCG
    /// guests hang before /init in a few percent of boots, and get stuck
    /// during the nested step about once in 6-10). A guest that died or
    /// panicked is not retried: that is what a broken guest does every time.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BootError::Timeout { .. })
    }

    /// The message with its whole source chain.
    pub fn chain(&self) -> String {
        let mut msg = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        msg
    }
}

/// How to run one profile.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Accelerator (already decided: see [`HostFacts::choose_accel`]).
    pub accel: Accel,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Where the run's files go (`domain.xml`, `console.log`, `capture/`,
    /// `report.json`). The caller owns it (a temp dir or `--out DIR/<name>`).
    pub dir: PathBuf,
    /// Power off after the captures, or leave a shell on the console.
    pub mode: Mode,
    /// Boots to try again when a phase times out.
    pub retries: u32,
    /// When the command started: a run's `prepare` time counts from here
    /// (it includes waiting for a `--jobs` slot).
    pub since: Instant,
}

/// What a run tells its caller as it goes (progress lines).
#[derive(Debug, Clone)]
pub enum Progress {
    /// The domain was created.
    Started {
        /// Domain name.
        domain: String,
    },
    /// The kernel reached the agent.
    KernelUp {
        /// Seconds since start.
        secs: f64,
    },
    /// A capture file is complete.
    Captured {
        /// File name.
        file: String,
    },
    /// A phase timed out; booting once more.
    Retrying {
        /// The first line of the error.
        why: String,
    },
    /// Shell mode: the console is the user's now.
    ShellReady {
        /// Domain name.
        domain: String,
    },
    /// The run's verdict (sent once per run, before the domain's destroy
    /// finished; the report returned at the end is the same unless
    /// [`Progress::TeardownFailed`] followed).
    Verdict {
        /// The report.
        report: Box<Report>,
    },
    /// The domain could not be destroyed after the verdict; the run's
    /// report becomes an error.
    TeardownFailed {
        /// Why.
        why: String,
    },
}

/// A name no other run uses: `nestlab-<profile>-<6 hex of the nonce>`.
pub fn domain_name(profile: &str, nonce: &Nonce) -> String {
    let id: String = nonce.as_str().chars().take(6).collect();
    format!("nestlab-{profile}-{id}")
}

/// Why a topology cannot run on this host with this guest kind, each
/// reason a sentence (empty when it can): QEMU devices the host's QEMU
/// lacks, what the guest kind lacks (a virtio IOMMU without its driver), and
/// `[tuning]` the host cannot honour. Such a run is skipped, not failed.
pub fn unmet(t: &Topology, facts: &HostFacts, kind: &dyn GuestKind, accel: Accel) -> Vec<String> {
    let mut why = Vec::new();
    let missing = missing_devices(t, facts);
    if !missing.is_empty() {
        why.push(format!("this host's QEMU lacks {}", missing.join(", ")));
    }
    why.extend(kind.lacks(t, accel));
    let tuning = facts.cannot_honour(t);
    if !tuning.is_empty() {
        why.push(format!(
            "this host cannot honour [tuning]: {}",
            tuning.join("; ")
        ));
    }
    why
}

/// The QEMU devices a topology needs that the host's QEMU lacks, each with
/// why (see [`crate::host::QEMU_DEVICES`]).
pub fn missing_devices(t: &Topology, facts: &HostFacts) -> Vec<String> {
    let mut need: Vec<(&str, String)> = Vec::new();
    if !t.expanders.is_empty() {
        need.push(("pxb-pcie", "PCIe expander buses".into()));
    }
    if !t.root_ports.is_empty() {
        need.push(("pcie-root-port", "root ports".into()));
    }
    if let Some(i) = t.profile.iommu {
        need.push((i.model.qemu_device(), format!("the {} IOMMU", i.model)));
    }
    for d in &t.devices {
        need.push((d.model.qemu_device(), format!("{} NICs", d.model)));
    }
    let mut missing: Vec<String> = Vec::new();
    for (dev, why) in need {
        let line = match crate::host::qemu_device(dev) {
            Some(q) if q.since.0 >= 3 => format!(
                "QEMU device {dev} ({why}; QEMU >= {}.{}, this host has {})",
                q.since.0, q.since.1, facts.qemu
            ),
            _ => format!("QEMU device {dev} ({why})"),
        };
        if !facts.has_device(dev) && !missing.contains(&line) {
            missing.push(line);
        }
    }
    missing
}

/// Renders the domain one boot starts: the agent's parameters for `t`, the
/// guest kind's boot files (staged on the host), the name and the run id.
///
/// A profile with `[nested]` loads kvm and the vfio modules and passes each
/// assigned device's id and guest address to the agent; one nested run may
/// take [`Timeouts::nested_run_secs`].
///
/// # Errors
/// When an assigned device is not in the topology, the guest kind cannot
/// boot it, or a boot file cannot be staged on the host.
pub fn prepare(
    t: &Topology,
    kind: &dyn GuestKind,
    host: &dyn Host,
    facts: &HostFacts,
    opts: &RunOptions,
    nonce: &Nonce,
) -> Result<Domain, BootError> {
    let params = AgentParams::for_topology(
        t,
        nonce.clone(),
        modules_for(t, facts, opts.accel),
        opts.mode,
        opts.timeouts.nested_run_secs(),
    )?;
    let files = kind.boot_files(t, facts, opts.accel, &params)?;
    let boot = BootSpec {
        kernel: host.stage(&files.kernel)?,
        initrd: match &files.initrd {
            Some(i) => host.stage(i)?,
            None => String::new(),
        },
        cmdline: files.cmdline,
    };
    let mut dom = render(t, opts.accel, &boot);
    dom.name = domain_name(&t.profile.name, nonce);
    if let Some(m) = dom.metadata.as_mut() {
        m.nestlab.run = Some(nonce.to_string());
    }
    Ok(dom)
}

/// The check that every file the agent was to print arrived: a capture
/// missing from a run (a renamed file, an agent that stopped early) would
/// otherwise only turn its checks into skips.
fn captures_check(expected: &[&'static str], got: &crate::capture::CaptureSet) -> Check {
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|f| !got.files.contains_key(*f))
        .collect();
    Check::judge(
        "agent.captures",
        missing.is_empty(),
        format!("{} capture files", expected.len()),
        if missing.is_empty() {
            format!("all {}", expected.len())
        } else {
            format!("missing {}", missing.join(", "))
        },
        if missing.is_empty() {
            "the agent sent every capture".to_string()
        } else {
            "the agent did not send every capture".to_string()
        },
    )
}

/// One attempt: prepare, boot, read. The captured set comes back with the
/// files the agent was to print.
async fn attempt(
    host: &Arc<dyn Host>,
    t: &Topology,
    kind: &dyn GuestKind,
    facts: &HostFacts,
    opts: &RunOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(session::Booted, Vec<&'static str>), BootError> {
    let nonce = Nonce::generate();
    let dom = prepare(t, kind, host.as_ref(), facts, opts, &nonce)?;
    let expected =
        AgentParams::for_topology(t, nonce.clone(), vec![], opts.mode, 1)?.expected_files();
    let xml = dom.to_xml()?;
    // [tuning] lives on the host: read it there while the domain runs.
    let host_view = t.profile.tuning.is_some();
    let booted = session::boot_once(host.clone(), xml, &nonce, opts, host_view, progress).await?;
    Ok((booted, expected))
}

/// Boots one profile and judges what its guest shows.
///
/// Writes `domain.xml`, `console.log`, `capture/` and `report.json` into
/// `opts.dir`. Returns the report; errors become a report with verdict
/// [`Verdict::Error`] and the message.
pub async fn run_profile(
    host: Arc<dyn Host>,
    t: &Topology,
    kind: &dyn GuestKind,
    opts: &RunOptions,
    progress: &(dyn Fn(&str, Progress) + Sync),
) -> Report {
    let start = Instant::now();
    let name = t.profile.name.clone();
    let report_progress = |p: Progress| progress(&name, p);
    let h = host.clone();
    let facts = match tokio::task::spawn_blocking(move || h.facts()).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return finish_error(&name, opts, start, BootError::Host(e), progress),
        Err(e) => {
            return finish_error(
                &name,
                opts,
                start,
                BootError::Internal(e.to_string()),
                progress,
            )
        }
    };
    let mut outcome = attempt(&host, t, kind, &facts, opts, &report_progress).await;
    let mut retried = 0;
    while retried < opts.retries && outcome.as_ref().is_err_and(BootError::is_retryable) {
        retried += 1;
        // Keep the failed boot's console for the post-mortem.
        let _ = fs::rename(
            opts.dir.join("console.log"),
            opts.dir.join(format!("console-attempt{retried}.log")),
        );
        if let Err(e) = &outcome {
            report_progress(Progress::Retrying {
                why: e.to_string().lines().next().unwrap_or("").to_string(),
            });
        }
        outcome = attempt(&host, t, kind, &facts, opts, &report_progress).await;
    }
    let (booted, expected) = match outcome {
        Ok(b) => b,
        Err(e) => return finish_error(&name, opts, start, e, progress),
    };
    let session::Booted {
        mut captured,
        host: host_view,
        teardown,
        times,
    } = booted;
    if let Some(v) = host_view {
        captured.host = true;
        let file = |content: String| crate::capture::CapturedFile {
            content,
            exit_code: Some(0),
        };
        captured
            .files
            .insert(crate::capture::HOST_DOMAIN.file.into(), file(v.domain_xml));
        if let Some(threads) = v.threads {
            captured
                .files
                .insert(crate::capture::HOST_THREADS.file.into(), file(threads));
        }
    }
    let judged = (|| {
        captured.write_dir(&opts.dir.join("capture"))?;
        let observed = Observed::from_set(&captured)?;
        let mut checks = verify(&expect(t), &observed);
        checks.push(captures_check(&expected, &captured));
        Ok::<_, BootError>(checks)
    })();
    let checks = match judged {
        Ok(c) => c,
        Err(e) => {
            let _ = teardown.finish().await;
            return finish_error(&name, opts, start, e, progress);
        }
    };
    let mut report = Report::from_checks(&name, checks, false);
    report.guest_errors = captured
        .step_errors
        .iter()
        .map(|e| GuestStepError {
            step: e.step.clone(),
            detail: e.detail.clone(),
        })
        .collect();
    report.timings = Some(Timings {
        prepare: times.create.duration_since(opts.since).as_secs_f64(),
        start: times.start,
        boot: times.boot,
        probe: times.probe,
        verdict: times.done.elapsed().as_secs_f64(),
        teardown: None,
        retried,
        guest_init_uptime: captured.init_uptime.map(|d| d.as_secs_f64()),
        guest_done_uptime: captured.done_uptime.map(|d| d.as_secs_f64()),
    });
    // The verdict is known: say it while the host tears the domain down.
    report.seconds = Some(start.elapsed().as_secs_f64());
    progress(
        &name,
        Progress::Verdict {
            report: Box::new(report.clone()),
        },
    );
    let t0 = Instant::now();
    let result = teardown.finish().await;
    if let Some(t) = report.timings.as_mut() {
        t.teardown = Some(t0.elapsed().as_secs_f64());
    }
    if let Err(e) = result {
        let msg = format!("the checks ran, but the domain could not be destroyed: {e}");
        progress(&name, Progress::TeardownFailed { why: msg.clone() });
        report = Report::without_checks(&name, Verdict::Error, msg);
        report.seconds = Some(start.elapsed().as_secs_f64());
    }
    let _ = fs::write(opts.dir.join("report.json"), report.to_json());
    report
}

fn finish_error(
    name: &str,
    opts: &RunOptions,
    start: Instant,
    e: BootError,
    progress: &(dyn Fn(&str, Progress) + Sync),
) -> Report {
    let mut report = Report::without_checks(name, Verdict::Error, e.chain());
    report.seconds = Some(start.elapsed().as_secs_f64());
    progress(
        name,
        Progress::Verdict {
            report: Box::new(report.clone()),
        },
    );
    let _ = fs::write(opts.dir.join("report.json"), report.to_json());
    report
}
