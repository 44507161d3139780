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
pub mod workload;

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
use crate::guest::BootFiles;
use crate::guest::{GuestError, GuestKind};
use crate::host::{Artifact, ArtifactStore, Host, HostError, HostFacts, Transfer};
use crate::model::{Accel, Topology};
use crate::observe::{ObserveError, Observed};
use crate::report::{Check, GuestStepError, Report, Timings, Verdict};
use crate::verify::verify;
use crate::xml::domain::{Domain, DomainXmlError};
use crate::xml::render::{render, BootSpec, DiskImage};
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
    /// The run failed, and then its domain could not be destroyed either
    /// (the host's daemon died and did not come back in time): it may
    /// still run there until removed (`nestlab down --all --connect URI`
    /// once the daemon is back).
    #[error("{cause}\n  and its domain could not be destroyed, it may still run on the host (remove it with `nestlab down --all --connect URI` once its libvirtd is back): {destroy}")]
    Abandoned {
        /// Why the run ended.
        cause: Box<BootError>,
        /// Why the destroy failed.
        destroy: HostError,
    },
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
    /// The timeouts of a guest with a system disk (the Debian guest), whose
    /// systemd and libvirtd start before its agent speaks.
    pub disk_timeouts: Timeouts,
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
    /// Run the workloads even when the topology checks failed.
    pub always: bool,
    /// Whether the run directory is kept after the run (`--out`): the
    /// report then says where the artifacts are.
    pub kept: bool,
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
    /// A boot file is being uploaded to the host (at most once a second,
    /// and when it is done).
    Uploading {
        /// The file's name (`initrd.img`).
        file: String,
        /// Bytes sent so far.
        done: u64,
        /// Its size.
        total: u64,
    },
    /// The boot files are on a remote host (sent before the domain starts;
    /// not sent for a local connection).
    Staged {
        /// Where they are (`pool nestlab on qemu+ssh://host/system`).
        store: String,
        /// Each file and what it took.
        files: Vec<(String, Transfer)>,
        /// Seconds the staging took.
        secs: f64,
    },
    /// A phase timed out; booting once more.
    Retrying {
        /// The first line of the error.
        why: String,
    },
    /// A line a workload printed.
    Output {
        /// The workload.
        workload: String,
        /// The line.
        line: String,
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
    // Shared folders are folders of this machine: only a libvirt here can
    // hand them to QEMU.
    if !t.shares.is_empty() && !crate::host::is_local_uri(&facts.uri) {
        missing.push(
            "the workloads' shared folders (they are this machine's: run them on a local libvirt URI)"
                .to_string(),
        );
    }
    missing
}

/// What staging one boot's files on the host took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Staging {
    /// Seconds, all files together.
    pub secs: f64,
    /// Bytes uploaded (0 when every file was there, or the host is local).
    pub uploaded: u64,
}

/// Makes one artifact available on the host (on a blocking thread),
/// telling `progress` how an upload goes.
async fn stage_one(
    host: &Arc<dyn Host>,
    a: &Artifact,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<crate::host::Staged, BootError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
    let (h, art) = (host.clone(), a.clone());
    let task = tokio::task::spawn_blocking(move || {
        h.stage(&art, &move |done, total| {
            let _ = tx.send((done, total));
        })
    });
    tokio::pin!(task);
    let file = a
        .path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| a.name.clone());
    let mut told: Option<Instant> = None;
    let mut tell = |done: u64, total: u64| {
        let due = told.map_or(true, |t| t.elapsed().as_secs_f64() >= 1.0);
        if due || done == total {
            told = Some(Instant::now());
            progress(Progress::Uploading {
                file: file.clone(),
                done,
                total,
            });
        }
    };
    loop {
        tokio::select! {
            biased;
            Some((done, total)) = rx.recv() => tell(done, total),
            r = &mut task => {
                while let Ok((done, total)) = rx.try_recv() {
                    tell(done, total);
                }
                return r
                    .map_err(|e| BootError::Internal(e.to_string()))?
                    .map_err(BootError::Host);
            }
        }
    }
}

/// Stages a boot's files on the host; what the domain then names.
async fn stage_files(
    host: &Arc<dyn Host>,
    t: &Topology,
    dir: &std::path::Path,
    files: BootFiles,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(BootSpec, Staging), BootError> {
    let t0 = Instant::now();
    let mut told = Vec::new();
    let kernel = stage_one(host, &files.kernel, progress).await?;
    told.push((files.kernel.clone(), kernel.transfer));
    let initrd = match &files.initrd {
        Some(i) => {
            let s = stage_one(host, i, progress).await?;
            told.push((i.clone(), s.transfer));
            s.path
        }
        None => String::new(),
    };
    let mut disks = Vec::new();
    for (a, format) in &files.disks {
        let s = stage_one(host, a, progress).await?;
        told.push((a.clone(), s.transfer));
        disks.push(DiskImage {
            path: s.path,
            format: format.to_string(),
        });
    }
    let store = host.store();
    let staging = Staging {
        // A local host reads the files where they are: nothing to time.
        secs: if store == ArtifactStore::Local {
            0.0
        } else {
            t0.elapsed().as_secs_f64()
        },
        uploaded: told
            .iter()
            .map(|(_, t)| match t {
                Transfer::Uploaded { bytes, .. } => *bytes,
                _ => 0,
            })
            .sum(),
    };
    if store != ArtifactStore::Local {
        progress(Progress::Staged {
            store: format!("{store} on {}", host.uri()),
            files: told
                .into_iter()
                .map(|(a, t)| {
                    let f = a
                        .path
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or(a.name);
                    (f, t)
                })
                .collect(),
            secs: staging.secs,
        });
    }
    let boot = BootSpec {
        kernel: kernel.path,
        initrd,
        cmdline: files.cmdline,
        disks,
        // Shared folders are the host's own: a folder of this machine only
        // for a local connection (the pool's README section says so).
        shares: t
            .shares
            .iter()
            .map(|sh| match &sh.source {
                crate::model::ShareSource::Folder(p) => p.display().to_string(),
                crate::model::ShareSource::HostUsr => "/usr".to_string(),
                crate::model::ShareSource::RunFolder => {
                    workload::run_folder(dir).display().to_string()
                }
            })
            .collect(),
    };
    Ok((boot, staging))
}

/// Renders the domain one boot starts: the agent's parameters for `t`, the
/// guest kind's boot files (staged on the host: uploaded to a remote one
/// unless there already), the name and the run id.
///
/// A profile with `[nested]` loads kvm and the vfio modules and passes each
/// assigned device's id and guest address to the agent; one nested run may
/// take [`Timeouts::nested_run_secs`].
///
/// # Errors
/// When an assigned device is not in the topology, the guest kind cannot
/// boot it, or a boot file cannot be staged on the host.
pub async fn prepare(
    t: &Topology,
    kind: &dyn GuestKind,
    host: &Arc<dyn Host>,
    facts: &HostFacts,
    opts: &RunOptions,
    nonce: &Nonce,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(Domain, Staging), BootError> {
    let params = AgentParams::for_topology(
        t,
        nonce.clone(),
        modules_for(t, facts, opts.accel),
        opts.mode,
        opts.timeouts.nested_run_secs(),
    )?;
    let files = kind.boot_files(t, facts, opts.accel, &params)?;
    let (boot, staging) = stage_files(host, t, &opts.dir, files, progress).await?;
    let mut dom = render(t, opts.accel, &boot);
    dom.name = domain_name(&t.profile.name, nonce);
    if let Some(m) = dom.metadata.as_mut() {
        m.nestlab.run = Some(nonce.to_string());
    }
    Ok((dom, staging))
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
) -> Result<(session::Booted, Vec<&'static str>, Staging), BootError> {
    let nonce = Nonce::generate();
    let run_folder = workload::prepare_run_folder(t, &opts.dir)?;
    let (dom, staging) = prepare(t, kind, host, facts, opts, &nonce, progress).await?;
    let expected =
        AgentParams::for_topology(t, nonce.clone(), vec![], opts.mode, 1)?.expected_files();
    let xml = dom.to_xml()?;
    // At the gate: the topology (and nested) checks on what the agent
    // printed so far decide whether the workloads run.
    let keeper = |captured: &crate::capture::CaptureSet| -> Result<(), BootError> {
        let Some(root) = &run_folder else {
            return Ok(());
        };
        let observed = Observed::from_set(captured)?;
        let failed: Vec<String> = verify(&expect(t), &observed)
            .into_iter()
            .filter(|c| c.status == crate::report::Status::Fail)
            .map(|c| c.id)
            .collect();
        let word = if failed.is_empty() {
            workload::Gate::Go
        } else if opts.always {
            progress(Progress::Output {
                workload: "*".into(),
                line: format!(
                    "nestlab: the topology checks failed ({}); running the workloads anyway (--always)",
                    failed.join(", ")
                ),
            });
            workload::Gate::Go
        } else {
            workload::Gate::Stop(format!(
                "the topology checks failed ({}); --always runs workloads anyway",
                failed.join(", ")
            ))
        };
        workload::write_gate(root, &word)
    };
    let gate: Option<session::GateKeeper<'_>> = run_folder.as_ref().map(|_| &keeper as _);
    // [tuning] lives on the host: read it there while the domain runs.
    let host_view = t.profile.tuning.is_some();
    let booted =
        session::boot_once(host.clone(), xml, &nonce, opts, host_view, progress, gate).await?;
    Ok((booted, expected, staging))
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
    let uri = host.uri().to_string();
    let report_progress = |p: Progress| progress(&name, p);
    let mut with_workloads = opts.clone();
    if !t.disks.is_empty() {
        with_workloads.timeouts = opts.disk_timeouts;
    }
    with_workloads.timeouts.workloads = std::time::Duration::from_secs(
        t.profile
            .workloads
            .iter()
            .map(|w| u64::from(w.timeout_secs))
            .sum(),
    );
    let opts = &with_workloads;
    let fail = |e: BootError| finish_error(&name, &uri, opts, start, e, progress);
    let h = host.clone();
    let facts = match tokio::task::spawn_blocking(move || h.facts()).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return fail(BootError::Host(e)),
        Err(e) => return fail(BootError::Internal(e.to_string())),
    };
    let mut staged = Staging::default();
    let mut outcome = attempt(&host, t, kind, &facts, opts, &report_progress).await;
    let mut retried = 0;
    if let Ok((_, _, s)) = &outcome {
        staged = s.clone();
    }
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
        if let Ok((_, _, s)) = &outcome {
            staged = s.clone();
        }
    }
    let (booted, expected) = match outcome {
        Ok((b, e, _)) => (b, e),
        Err(e) => return fail(e),
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
            return fail(e);
        }
    };
    let mut report = Report::from_checks(&name, checks, false);
    report.host = Some(uri.clone());
    match workload::finish_run_folder(&opts.dir) {
        Ok(Some(artifacts)) => {
            if opts.kept {
                report.artifacts = Some(artifacts.display().to_string());
            }
            report.user_junit = crate::report::user_junit(&artifacts);
        }
        Ok(None) => {}
        Err(e) => report.error = Some(format!("the artifacts could not be kept: {}", e.chain())),
    }
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
        stage: staged.secs,
        uploaded: staged.uploaded,
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
        report.host = Some(uri.clone());
        report.seconds = Some(start.elapsed().as_secs_f64());
    }
    let _ = fs::write(opts.dir.join("report.json"), report.to_json());
    report
}

fn finish_error(
    name: &str,
    uri: &str,
    opts: &RunOptions,
    start: Instant,
    e: BootError,
    progress: &(dyn Fn(&str, Progress) + Sync),
) -> Report {
    let mut report = Report::without_checks(name, Verdict::Error, e.chain());
    report.host = Some(uri.to_string());
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
