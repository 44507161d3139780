//! Boot stage: the runner. Takes a resolved topology and the probe
//! appliance to a [`Report`] by booting a transient libvirt domain.
//!
//! The domain is started paused, its console stream opened, then resumed,
//! so no byte of output is missed, even against a remote libvirt URI. The
//! runner reads until the probe's end marker (not until shutdown), with a
//! timeout per phase (boot: until /init starts; probe: until the captures
//! are done). A kernel panic, or the console closing because QEMU died, is
//! noticed at once. The domain is destroyed on every path: success,
//! failure, error, timeout, a panic in our code (a drop guard), and
//! cancellation (the CLI drops the run's future on Ctrl-C / SIGTERM).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::expect::expect;
use crate::guest::agent::{AgentParams, Assignment, Mode, SriovRequest};
use crate::guest::appliance::Appliance;
use crate::guest::protocol::console::{ConsoleEvent, ConsoleReader};
use crate::guest::protocol::Nonce;
use crate::host::libvirt::{Guest, Hypervisor, LibvirtError};
use crate::model::Accel;
use crate::model::Topology;
use crate::observe::Observed;
use crate::report::{Report, Timings, Verdict};
use crate::verify::verify;
use crate::xml::domain::Domain;
use crate::xml::render::{render, BootSpec};

/// Why a run ended without a verdict from checks.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// libvirt refused or failed.
    #[error(transparent)]
    Libvirt(#[from] LibvirtError),
    /// A phase took too long.
    #[error("timed out after {secs} s in the {phase} phase ({what}){tail}")]
    Timeout {
        /// `boot` or `probe`.
        phase: &'static str,
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
    #[error("the guest died before the probe finished ({why}){tail}")]
    Died {
        /// What was seen.
        why: String,
        /// Last console lines, formatted.
        tail: String,
    },
    /// The console output could not be turned into captures.
    #[error("the console output is incomplete")]
    Console(#[from] crate::guest::protocol::console::ConsoleError),
    /// The run directory could not be written.
    #[error("cannot write {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Rendering or probe parameters failed.
    #[error("{0}")]
    Prepare(String),
    /// A captured file could not be parsed.
    #[error(transparent)]
    Observe(#[from] crate::observe::ObserveError),
}

/// How often a console stream that libvirt ended while the domain still
/// runs is reopened before the guest is called dead.
const MAX_CONSOLE_REOPENS: u32 = 5;

/// Per-phase timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From resume until the appliance's /init starts.
    pub boot: Duration,
    /// From /init starting until the captures are done.
    pub probe: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            boot: Duration::from_secs(120),
            probe: Duration::from_secs(180),
        }
    }
}

/// How to run one profile.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Accelerator (already decided: see [`choose_accel`]).
    pub accel: Accel,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Where the run's files go (`domain.xml`, `console.log`, `capture/`,
    /// `report.json`). The caller owns it (a temp dir or `--out DIR/<name>`).
    pub dir: PathBuf,
    /// Power off after the probe, or leave a shell on the console.
    pub mode: Mode,
    /// Boots to try again when the boot phase times out.
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
    /// The kernel reached /init.
    KernelUp {
        /// Seconds since start.
        secs: f64,
    },
    /// A capture file is complete.
    Captured {
        /// File name.
        file: String,
    },
    /// The boot phase timed out; booting once more.
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

/// Decides the accelerator for `auto`: KVM only when /dev/kvm can be opened
/// read-write AND the host CPU has vmx or svm; otherwise TCG. Returns the
/// choice and why.
pub fn choose_accel() -> (Accel, String) {
    let kvm_ok = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = host_virt_flag(&cpuinfo);
    match (kvm_ok, flags) {
        (true, Some(f)) => (
            Accel::Kvm,
            format!("/dev/kvm is usable and the CPU has {f}"),
        ),
        (false, _) => (Accel::Tcg, "/dev/kvm cannot be opened read-write".into()),
        (true, None) => (
            Accel::Tcg,
            "the host CPU has neither vmx nor svm (a paravirtual /dev/kvm)".into(),
        ),
    }
}

/// `vmx` or `svm` when /proc/cpuinfo's flags have it.
pub fn host_virt_flag(cpuinfo: &str) -> Option<&'static str> {
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags"))?;
    let words: Vec<&str> = flags.split_whitespace().collect();
    if words.contains(&"vmx") {
        Some("vmx")
    } else if words.contains(&"svm") {
        Some("svm")
    } else {
        None
    }
}

/// The kernel modules the probe loads for a profile on this accelerator:
/// igb when a NIC has VFs (not igbvf: VFs stay unbound, free for vfio-pci),
/// kvm with kvm_amd or kvm_intel, and vfio, vfio_iommu_type1, vfio_pci
/// when the profile assigns devices to a nested guest.
pub fn modules_for(t: &Topology, accel: Accel) -> Vec<String> {
    let mut m = Vec::new();
    if t.devices.iter().any(|d| !d.vfs.is_empty()) {
        m.push("igb".to_string());
    }
    // /dev/kvm in the guest: under TCG `-cpu max` shows svm; under KVM the
    // guest CPU is the host's.
    m.push("kvm".to_string());
    let flag = match accel {
        Accel::Tcg => Some("svm"),
        Accel::Kvm => host_virt_flag(&fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
    };
    match flag {
        Some("vmx") => m.push("kvm_intel".to_string()),
        Some(_) => m.push("kvm_amd".to_string()),
        None => {}
    }
    if !t.profile.nested.is_empty() {
        for v in ["vfio", "vfio_iommu_type1", "vfio_pci"] {
            m.push(v.to_string());
        }
    }
    m
}

/// The QEMU devices a topology needs that `device_help` (the output of
/// `qemu-system-x86_64 -device help`) does not list, each with why.
pub fn missing_devices(t: &Topology, device_help: &str) -> Vec<String> {
    let has = |d: &str| device_help.contains(&format!("name \"{d}\""));
    let mut need: Vec<(&str, String)> = Vec::new();
    if !t.expanders.is_empty() {
        need.push(("pxb-pcie", "PCIe expander buses".into()));
    }
    if !t.root_ports.is_empty() {
        need.push(("pcie-root-port", "root ports".into()));
    }
    if t.profile.iommu.is_some() {
        need.push(("intel-iommu", "the Intel IOMMU".into()));
    }
    for d in &t.devices {
        need.push((d.model.qemu_device(), format!("{} NICs", d.model)));
    }
    let mut missing: Vec<String> = Vec::new();
    for (dev, why) in need {
        let line = if dev == "igb" {
            format!("QEMU device igb ({why}; QEMU >= 8.0)")
        } else {
            format!("QEMU device {dev} ({why})")
        };
        if !has(dev) && !missing.contains(&line) {
            missing.push(line);
        }
    }
    missing
}

/// A name no other run uses: `nestlab-<profile>-<6 hex of the nonce>`.
pub fn domain_name(profile: &str, nonce: &Nonce) -> String {
    let id: String = nonce.as_str().chars().take(6).collect();
    format!("nestlab-{profile}-{id}")
}

/// Renders the domain a run starts.
///
/// A profile with `[nested]` boots the appliance's nested flavour
/// ([`Appliance::initrd_for`]), loads kvm and the vfio modules, and passes
/// each assigned device's id and guest address (`nestlab.assign=`); the
/// nested guest gets [`DEFAULT_NESTED_TIMEOUT_SECS`](crate::guest::agent::DEFAULT_NESTED_TIMEOUT_SECS)
/// a run, or a quarter of the probe timeout when that is shorter (a run
/// that times out is tried once more).
///
/// # Errors
/// [`BootError::Prepare`] when the probe parameters cannot be written, an
/// assigned device is not in the topology, or the profile needs the nested
/// flavour and the appliance has none.
pub fn prepare(
    t: &Topology,
    appliance: &Appliance,
    opts: &RunOptions,
    nonce: &Nonce,
) -> Result<Domain, BootError> {
    let mut params = AgentParams::new(nonce.clone());
    params.mode = opts.mode;
    params.modules = modules_for(t, opts.accel);
    params.sriov = t
        .devices
        .iter()
        .filter(|d| !d.vfs.is_empty())
        .map(|d| SriovRequest {
            pf: d.guest_bdf,
            num_vfs: d.vfs.len() as u16,
        })
        .collect();
    for r in &t.profile.nested {
        let missing = || BootError::Prepare(format!("nested.assign: {r} is not in the topology"));
        let d = t.devices.get(r.nic).ok_or_else(missing)?;
        let bdf = match r.vf {
            Some(i) => d.vfs.get(i as usize).ok_or_else(missing)?.guest_bdf,
            None => d.guest_bdf,
        };
        params.assign.push(Assignment {
            id: r.to_string(),
            bdf,
        });
    }
    params.nested_timeout_secs = nested_timeout_secs(opts);
    let initrd = appliance
        .initrd_for(!params.assign.is_empty())
        .map_err(BootError::Prepare)?;
    let probe = params
        .to_cmdline()
        .map_err(|e| BootError::Prepare(e.to_string()))?;
    // Under TCG the guest is spared its delay-loop calibrations (`lpj=`).
    let tcg_args = match opts.accel {
        Accel::Tcg => crate::guest::appliance::boot_args_for_tcg(
            &fs::read_to_string("/proc/cpuinfo").unwrap_or_default(),
            crate::guest::appliance::kernel_config(&appliance.source).as_deref(),
        ),
        Accel::Kvm => None,
    };
    let boot = BootSpec {
        kernel: appliance.kernel.display().to_string(),
        initrd: initrd.display().to_string(),
        cmdline: [
            Some(crate::guest::appliance::default_cmdline().to_string()),
            tcg_args,
            Some(probe),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" "),
    };
    let mut dom = render(t, opts.accel, &boot);
    dom.name = domain_name(&t.profile.name, nonce);
    if let Some(m) = dom.metadata.as_mut() {
        m.nestlab.run = Some(nonce.to_string());
    }
    Ok(dom)
}

/// Seconds one nested guest run may take inside the virtual host: a
/// quarter of the probe timeout, at least 10 and at most
/// [`DEFAULT_NESTED_TIMEOUT_SECS`](crate::guest::agent::DEFAULT_NESTED_TIMEOUT_SECS).
fn nested_timeout_secs(opts: &RunOptions) -> u32 {
    u32::try_from(opts.timeouts.probe.as_secs() / 4)
        .unwrap_or(u32::MAX)
        .clamp(10, crate::guest::agent::DEFAULT_NESTED_TIMEOUT_SECS)
}

/// How long the console may take from the `nested` marker to the end of
/// the captures: the appliance runs the nested guest at most twice under
/// its own timeout, plus binding devices and printing the files. A virtual
/// host that goes quiet for longer is stuck (under TCG a vCPU was seen to
/// keep a timer interrupt in service for good while a nested guest ran,
/// which stalls the serial console and the appliance's own timeout), and
/// the run is booted again like a boot-phase hang.
fn nested_phase_budget(opts: &RunOptions) -> Duration {
    Duration::from_secs(2 * u64::from(nested_timeout_secs(opts)) + 30)
}

/// How long the console may stay quiet in the probe phase: a third of the
/// probe timeout (60 s by default), at least 10 s. The
/// appliance prints every capture as it goes; its longest silences are
/// loading modules and bringing CPUs online, a few seconds even with 8
/// guests on 2 cores. A virtual host that stopped (under TCG an 8-vCPU
/// guest was seen to hang while bringing CPUs up) is booted again.
fn probe_quiet(opts: &RunOptions) -> Duration {
    (opts.timeouts.probe / 3)
        .max(Duration::from_secs(10))
        .min(opts.timeouts.probe)
}

/// How long the console may stay quiet during the nested step, where the
/// appliance prints an `alive` marker every
/// [`NESTED_HEARTBEAT_SECS`](crate::guest::agent::NESTED_HEARTBEAT_SECS).
const NESTED_QUIET: Duration = Duration::from_secs(30);

/// The phase a boot is in, and when it times out: at `until` (its whole
/// budget), or, where the console must keep talking (probe and nested
/// phases: the appliance prints all along, a virtual host stuck under TCG
/// goes silent), after `quiet` without output.
struct Phase {
    name: &'static str,
    /// The phase's whole budget.
    limit: Duration,
    /// What the phase waits for (for the timeout message).
    what: &'static str,
    until: tokio::time::Instant,
    quiet: Option<Duration>,
}

impl Phase {
    fn enter(
        name: &'static str,
        limit: Duration,
        what: &'static str,
        quiet: Option<Duration>,
    ) -> Phase {
        Phase {
            name,
            limit,
            what,
            until: tokio::time::Instant::now() + limit,
            quiet,
        }
    }

    /// When it times out, the console having last printed at `heard`.
    fn deadline(&self, heard: tokio::time::Instant) -> tokio::time::Instant {
        match self.quiet {
            Some(q) => self.until.min(heard + q),
            None => self.until,
        }
    }

    /// The timeout error for a deadline that passed.
    fn timed_out(&self, deadline: tokio::time::Instant, tail: String) -> BootError {
        let (secs, what) = match self.quiet {
            Some(q) if deadline < self.until => (
                q.as_secs(),
                format!(
                    "the console printed nothing for {} s; {}",
                    q.as_secs(),
                    self.what
                ),
            ),
            _ => (self.limit.as_secs(), self.what.to_string()),
        };
        BootError::Timeout {
            phase: self.name,
            secs,
            what,
            tail,
        }
    }
}

/// When one boot's phases ended.
struct BootTimes {
    /// When the domain's start was asked for.
    create: Instant,
    start: f64,
    boot: f64,
    probe: f64,
    /// When the end marker came.
    done: Instant,
    guest_init_uptime: Option<f64>,
    guest_done_uptime: Option<f64>,
}

/// A destroy in flight: the verdict is printed while libvirt tears the
/// domain down (at least 200 ms: it polls for QEMU's exit every 200 ms).
pub struct Teardown(Option<tokio::task::JoinHandle<Result<(), LibvirtError>>>);

impl Teardown {
    /// Waits for the destroy to finish.
    ///
    /// # Errors
    /// When the domain may still exist.
    pub async fn finish(self) -> Result<(), LibvirtError> {
        match self.0 {
            Some(h) => h.await.unwrap_or_else(|e| {
                Err(LibvirtError {
                    what: "destroy".into(),
                    message: e.to_string(),
                })
            }),
            None => Ok(()),
        }
    }
}

/// Destroys the domain when dropped, unless [`DomainGuard::destroy`] ran.
struct DomainGuard {
    guest: Option<Arc<dyn Guest>>,
}

impl DomainGuard {
    /// Starts the destroy on a blocking thread; it runs to its end even if
    /// the returned [`Teardown`] is dropped (cancellation).
    fn start_destroy(&mut self) -> Teardown {
        Teardown(
            self.guest
                .take()
                .map(|g| tokio::task::spawn_blocking(move || g.destroy())),
        )
    }

    async fn destroy(&mut self) -> Result<(), LibvirtError> {
        match self.guest.take() {
            Some(g) => tokio::task::spawn_blocking(move || g.destroy())
                .await
                .unwrap_or_else(|e| {
                    Err(LibvirtError {
                        what: "destroy".into(),
                        message: e.to_string(),
                    })
                }),
            None => Ok(()),
        }
    }
}

impl Drop for DomainGuard {
    fn drop(&mut self) {
        if let Some(g) = self.guest.take() {
            let _ = g.destroy();
        }
    }
}

fn tail_text(reader: &ConsoleReader) -> String {
    let lines = reader.tail(15);
    if lines.is_empty() {
        return "\n  (the console printed nothing)".into();
    }
    let mut s = String::from("\n  last console lines:");
    for l in lines {
        s.push_str("\n  | ");
        s.push_str(&l);
    }
    s
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), BootError> {
    fs::write(path, data).map_err(|source| BootError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Boots one profile and judges what its guest shows.
///
/// Writes `domain.xml`, `console.log`, `capture/` and `report.json` into
/// `opts.dir`. Returns the report; errors become a report with verdict
/// [`Verdict::Error`] and the message.
pub async fn run_profile(
    hv: Arc<dyn Hypervisor>,
    t: &Topology,
    appliance: &Appliance,
    opts: &RunOptions,
    progress: &(dyn Fn(&str, Progress) + Sync),
) -> Report {
    let start = Instant::now();
    let name = t.profile.name.clone();
    let mut outcome =
        boot_and_capture(hv.clone(), t, appliance, opts, &|p| progress(&name, p)).await;
    let mut retries = opts.retries;
    let mut attempt = 0;
    // Under TCG with many vCPUs a guest sometimes hangs before /init
    // (about 7% of 8-vCPU boots were seen to), or while a nested guest runs
    // (about one in 6-10 nested reference runs): boot it again. A hang in
    // the probe phase (bringing CPUs online now happens there) likewise.
    while retries > 0
        && matches!(
            &outcome,
            Err(BootError::Timeout {
                phase: "boot" | "probe" | "nested",
                ..
            })
        )
    {
        retries -= 1;
        attempt += 1;
        // Keep the failed boot's console for the post-mortem.
        let _ = fs::rename(
            opts.dir.join("console.log"),
            opts.dir.join(format!("console-attempt{attempt}.log")),
        );
        if let Err(e) = &outcome {
            progress(
                &name,
                Progress::Retrying {
                    why: e.to_string().lines().next().unwrap_or("").to_string(),
                },
            );
        }
        outcome = boot_and_capture(hv.clone(), t, appliance, opts, &|p| progress(&name, p)).await;
    }
    let (mut report, teardown) = match outcome {
        Ok((observed, teardown, times)) => {
            let mut r = Report::from_checks(&name, verify(&expect(t), &observed), false);
            r.timings = Some(Timings {
                prepare: times.create.duration_since(opts.since).as_secs_f64(),
                start: times.start,
                boot: times.boot,
                probe: times.probe,
                verdict: times.done.elapsed().as_secs_f64(),
                teardown: None,
                retried: attempt,
                guest_init_uptime: times.guest_init_uptime,
                guest_done_uptime: times.guest_done_uptime,
            });
            (r, Some(teardown))
        }
        Err(e) => (
            Report::without_checks(&name, Verdict::Error, error_chain(&e)),
            None,
        ),
    };
    // The verdict is known: say it while libvirt still tears the domain down.
    report.seconds = Some(start.elapsed().as_secs_f64());
    progress(
        &name,
        Progress::Verdict {
            report: Box::new(report.clone()),
        },
    );
    if let Some(teardown) = teardown {
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
    }
    let _ = fs::write(opts.dir.join("report.json"), report.to_json());
    report
}

fn error_chain(e: &BootError) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

async fn boot_and_capture(
    hv: Arc<dyn Hypervisor>,
    t: &Topology,
    appliance: &Appliance,
    opts: &RunOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(Observed, Teardown, BootTimes), BootError> {
    let start = Instant::now();
    let nonce = Nonce::generate();
    let dom = prepare(t, appliance, opts, &nonce)?;
    let xml = dom
        .to_xml()
        .map_err(|e| BootError::Prepare(e.to_string()))?;
    write_file(&opts.dir.join("domain.xml"), xml.as_bytes())?;
    let log_path = opts.dir.join("console.log");
    let mut log = fs::File::create(&log_path).map_err(|source| BootError::Io {
        path: log_path.clone(),
        source,
    })?;

    // The guard is made on the blocking thread: if this future is dropped
    // (Ctrl-C) while libvirt is still starting the domain, the guard is
    // dropped when the start returns, and destroys it.
    let hv2 = hv.clone();
    let mut guard = tokio::task::spawn_blocking(move || {
        hv2.start_paused(&xml)
            .map(|g| DomainGuard { guest: Some(g) })
    })
    .await
    .map_err(|e| BootError::Prepare(e.to_string()))??;
    let guest = match &guard.guest {
        Some(g) => g.clone(),
        None => return Err(BootError::Prepare("no domain".into())),
    };
    progress(Progress::Started {
        domain: guest.name().to_string(),
    });

    let g2 = guest.clone();
    let mut console = tokio::task::spawn_blocking(move || g2.open_console())
        .await
        .map_err(|e| BootError::Prepare(e.to_string()))??;
    let (tx, mut rx) = mpsc::channel::<Result<Vec<u8>, LibvirtError>>(64);
    let g4 = guest.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        let mut reopened = 0;
        loop {
            match console.read(&mut buf) {
                // The stream ended while the domain still runs: libvirt
                // dropped it (seen under load with 8 guests on 2 cores).
                // Reopen it rather than call the guest dead.
                Ok(0) if reopened < MAX_CONSOLE_REOPENS && g4.is_active() => {
                    match g4.open_console() {
                        Ok(c) => {
                            console = c;
                            reopened += 1;
                        }
                        // Gone meanwhile (it was stopping as the stream
                        // ended): the stream's end is the guest's end.
                        Err(_) if !g4.is_active() => break,
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            break;
                        }
                    }
                }
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(Ok(buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let g3 = guest.clone();
    tokio::task::spawn_blocking(move || g3.resume())
        .await
        .map_err(|e| BootError::Prepare(e.to_string()))??;

    let resumed = Instant::now();
    let mut init_at: Option<Instant> = None;
    let mut reader = ConsoleReader::new(&nonce);
    let mut phase = Phase::enter(
        "boot",
        opts.timeouts.boot,
        "waiting for the kernel to start the probe's /init",
        None,
    );
    let mut deadline = phase.deadline(tokio::time::Instant::now());
    let outcome: Result<(), BootError> = loop {
        let chunk = tokio::time::timeout_at(deadline, rx.recv()).await;
        let bytes = match chunk {
            Err(_) => break Err(phase.timed_out(deadline, tail_text(&reader))),
            Ok(None) => {
                let g = guest.clone();
                let active = tokio::task::spawn_blocking(move || g.is_active())
                    .await
                    .unwrap_or(false);
                let why = if active {
                    "the console stream closed".to_string()
                } else {
                    "QEMU exited or the domain was destroyed".to_string()
                };
                break Err(BootError::Died {
                    why,
                    tail: tail_text(&reader),
                });
            }
            Ok(Some(Err(e))) => {
                break Err(BootError::Died {
                    why: e.to_string(),
                    tail: tail_text(&reader),
                });
            }
            Ok(Some(Ok(b))) => b,
        };
        let _ = log.write_all(&bytes);
        deadline = phase.deadline(tokio::time::Instant::now());
        let mut finished = false;
        for ev in reader.feed(&bytes) {
            match ev {
                ConsoleEvent::InitStarted => {
                    init_at = Some(Instant::now());
                    progress(Progress::KernelUp {
                        secs: start.elapsed().as_secs_f64(),
                    });
                    phase = Phase::enter(
                        "probe",
                        opts.timeouts.probe,
                        "waiting for the probe's captures",
                        Some(probe_quiet(opts)),
                    );
                    deadline = phase.deadline(tokio::time::Instant::now());
                }
                ConsoleEvent::FileDone(f) => progress(Progress::Captured { file: f }),
                ConsoleEvent::NestedStarted(_) => {
                    phase = Phase::enter(
                        "nested",
                        nested_phase_budget(opts),
                        "waiting for the nested step (the appliance prints a heartbeat while it runs)",
                        Some(NESTED_QUIET),
                    );
                    deadline = phase.deadline(tokio::time::Instant::now());
                }
                ConsoleEvent::KernelPanic(line) => {
                    return Err(BootError::Panic {
                        line,
                        tail: tail_text(&reader),
                    })
                    .inspect_err(|_| drop(log));
                }
                ConsoleEvent::Done if opts.mode == Mode::Probe => finished = true,
                ConsoleEvent::ShellReady => {
                    progress(Progress::ShellReady {
                        domain: guest.name().to_string(),
                    });
                    finished = true;
                }
                _ => {}
            }
        }
        if finished {
            break Ok(());
        }
    };
    let done_at = Instant::now();
    let _ = log.flush();
    if let Err(e) = outcome {
        guard.destroy().await?;
        return Err(e);
    }
    let teardown = if opts.mode == Mode::Shell {
        // Leave it running for the user: disarm the guard.
        guard.guest = None;
        Teardown(None)
    } else {
        guard.start_destroy()
    };
    let init_at = init_at.unwrap_or(resumed);
    let mut times = BootTimes {
        create: start,
        start: resumed.duration_since(start).as_secs_f64(),
        boot: init_at.duration_since(resumed).as_secs_f64(),
        probe: done_at.duration_since(init_at).as_secs_f64(),
        done: done_at,
        guest_init_uptime: None,
        guest_done_uptime: None,
    };
    let observed = (|| {
        let captured = reader.finish()?;
        times.guest_init_uptime = captured.init_uptime.map(|d| d.as_secs_f64());
        times.guest_done_uptime = captured.done_uptime.map(|d| d.as_secs_f64());
        let dir = opts.dir.join("capture");
        captured
            .write_dir(&dir)
            .map_err(|e| BootError::Prepare(e.to_string()))?;
        Ok(Observed::from_dir(&dir)?)
    })();
    match observed {
        Ok(o) => Ok((o, teardown, times)),
        Err(e) => {
            teardown.finish().await?;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_devices_names_igb_and_qemu_version() {
        let t = crate::resolve::resolve(&crate::front::parse::load_profile_arg("sriov").unwrap())
            .unwrap();
        let old_qemu = "name \"pxb-pcie\", bus PCI\nname \"pcie-root-port\"\nname \"intel-iommu\"\nname \"e1000e\", bus PCI\n";
        assert_eq!(
            missing_devices(&t, old_qemu),
            vec!["QEMU device igb (igb NICs; QEMU >= 8.0)".to_string()]
        );
        assert!(missing_devices(&t, &format!("{old_qemu}name \"igb\"\n")).is_empty());
    }

    fn topology(name: &str) -> Topology {
        crate::resolve::resolve(&crate::front::parse::load_profile_arg(name).unwrap()).unwrap()
    }

    #[test]
    fn modules_for_nested_and_sriov() {
        let m = modules_for(&topology("nova-pf-vf"), Accel::Tcg);
        assert_eq!(
            m,
            [
                "igb",
                "kvm",
                "kvm_amd",
                "vfio",
                "vfio_iommu_type1",
                "vfio_pci"
            ]
        );
        let m = modules_for(&topology("two-socket"), Accel::Tcg);
        assert_eq!(m, ["kvm", "kvm_amd"]);
    }

    fn fake_appliance(nested: bool) -> Appliance {
        let dir = PathBuf::from("/cache/appliance/base");
        let kernel = crate::guest::appliance::GuestKernel {
            vmlinuz: "/k/vmlinuz-1".into(),
            modules_dir: "/k/lib/modules/1".into(),
            version: "1".into(),
            origin: crate::guest::appliance::KernelOrigin::Explicit,
        };
        Appliance {
            kernel: dir.join("vmlinux"),
            bzimage: dir.join("vmlinuz"),
            pvh_unavailable: None,
            initrd: dir.join("initrd.img"),
            kernel_version: "1".into(),
            modules: vec![],
            missing_modules: vec![],
            hash: "base".into(),
            cached: true,
            dir,
            source: kernel,
            initrd_size: 1,
            nested: nested.then(|| crate::guest::appliance::NestedFlavour {
                initrd: "/cache/appliance/nested/initrd.img".into(),
                initrd_size: 2,
                nested_initrd_size: 1,
                nested_kernel: "bzImage".into(),
                hash: "nested".into(),
                cached: true,
                dir: "/cache/appliance/nested".into(),
            }),
            nested_unavailable: (!nested).then(|| "qemu-system-x86_64 not found".into()),
        }
    }

    #[test]
    fn prepare_passes_assignments_and_picks_the_flavour() {
        let opts = RunOptions {
            accel: Accel::Tcg,
            timeouts: Timeouts::default(),
            dir: PathBuf::from("/tmp"),
            mode: Mode::Probe,
            retries: 0,
            since: Instant::now(),
        };
        let nonce: Nonce = "abc".parse().unwrap();
        let a = fake_appliance(true);
        let dom = prepare(&topology("nova-pf-vf"), &a, &opts, &nonce).unwrap();
        assert!(
            dom.os.cmdline.contains(
                " nestlab.assign=nic0@0000:b5:00.0,nic1.vf0@0000:c9:10.0 nestlab.nested_timeout=45 "
            ),
            "{}",
            dom.os.cmdline
        );
        assert_eq!(dom.os.initrd, "/cache/appliance/nested/initrd.img");
        let dom = prepare(&topology("reference"), &a, &opts, &nonce).unwrap();
        assert!(dom
            .os
            .cmdline
            .contains(" nestlab.assign=nic8@0000:df:00.0 "));
        // No [nested]: the small base initramfs, no assignment.
        let dom = prepare(&topology("two-socket"), &a, &opts, &nonce).unwrap();
        assert_eq!(dom.os.initrd, "/cache/appliance/base/initrd.img");
        assert!(!dom.os.cmdline.contains("nestlab.assign"));
        // A nested profile without the nested flavour: an error saying why.
        let e = prepare(&topology("sriov"), &fake_appliance(false), &opts, &nonce).unwrap_err();
        assert!(
            e.to_string().contains("qemu-system-x86_64 not found"),
            "{e}"
        );
        // --initrd replaced the initramfs: booted as is.
        let mut b = fake_appliance(false);
        b.initrd = "/elsewhere/initrd.img".into();
        let dom = prepare(&topology("sriov"), &b, &opts, &nonce).unwrap();
        assert_eq!(dom.os.initrd, "/elsewhere/initrd.img");
    }

    #[test]
    fn virt_flags() {
        assert_eq!(host_virt_flag("flags\t: fpu vmx sse"), Some("vmx"));
        assert_eq!(host_virt_flag("flags\t: fpu svm"), Some("svm"));
        assert_eq!(host_virt_flag("flags\t: fpu sse"), None);
    }
}
