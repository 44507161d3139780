//! `nestlab run`, `up` and `down`: the terminal side of the runner in
//! [`nestlab::runner`]. Builds the tokio runtime, handles Ctrl-C / SIGTERM,
//! prints progress and reports.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nestlab::guest::agent::Mode;
use nestlab::host::libvirt::{Hypervisor, Libvirt};
use nestlab::model::Accel;
use nestlab::model::Topology;
use nestlab::report::{junit, Report, Verdict};
use nestlab::runner::{choose_accel, missing_devices, run_profile, Progress, RunOptions, Timeouts};

use crate::cli::{
    build_appliance, load_run_topology, print_error, RunArgs, EXIT_FAIL, EXIT_INFRA, EXIT_INVALID,
    EXIT_OK,
};

/// Exit code after SIGINT (128 + 2).
pub const EXIT_SIGINT: u8 = 130;
/// Exit code after SIGTERM (128 + 15).
pub const EXIT_SIGTERM: u8 = 143;

/// The default URI: the system daemon for root, the session one otherwise.
pub fn default_uri() -> String {
    // SAFETY-free: geteuid through the environment is unreliable; read /proc.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        "qemu:///system".into()
    } else {
        "qemu:///session".into()
    }
}

fn accel_of(arg: &str) -> Result<(Accel, String), u8> {
    match arg {
        "auto" => Ok(choose_accel()),
        "kvm" => Ok((Accel::Kvm, "forced with --accel kvm".into())),
        "tcg" => Ok((Accel::Tcg, "forced with --accel tcg".into())),
        other => {
            eprintln!("error: --accel {other}: use auto, kvm or tcg");
            Err(EXIT_INVALID)
        }
    }
}

fn connect(uri: &str) -> Result<Arc<dyn Hypervisor>, u8> {
    Libvirt::connect(uri).map(|l| Arc::new(l) as Arc<dyn Hypervisor>).map_err(|e| {
        print_error(&e);
        eprintln!("hint: is libvirtd running? (./dev setup starts it; `nestlab doctor` checks the host)");
        EXIT_INFRA
    })
}

/// What `run` and `up` need before booting anything.
struct Host {
    accel: Accel,
    uri: String,
    appliance: nestlab::guest::appliance::Appliance,
    hv: Arc<dyn Hypervisor>,
}

/// Decides the accelerator, builds the appliance and connects to libvirt,
/// in that order; prints what went wrong and returns its exit code.
fn prepare_host(args: &RunArgs) -> Result<Host, u8> {
    let (accel, why) = accel_of(&args.accel)?;
    let uri = args.connect.clone().unwrap_or_else(default_uri);
    eprintln!("nestlab: accelerator {accel} ({why}); libvirt {uri}");
    let mut appliance = build_appliance(&args.kernel)?;
    if let Some(initrd) = &args.initrd {
        if let Err(e) = std::fs::File::open(initrd) {
            eprintln!("error: --initrd {}: {e}", initrd.display());
            return Err(EXIT_INFRA);
        }
        appliance.initrd = initrd.clone();
    }
    let hv = connect(&uri)?;
    Ok(Host {
        accel,
        uri,
        appliance,
        hv,
    })
}

/// `qemu-system-x86_64 -device help` of this host (`$NESTLAB_QEMU` names
/// another binary), when the URI is local (for a remote one the host's QEMU
/// is not the one that runs).
fn local_device_help(uri: &str) -> Option<String> {
    let local = uri.starts_with("qemu:///") || !uri.contains("://");
    if !local {
        return None;
    }
    let qemu = std::env::var("NESTLAB_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into());
    let out = std::process::Command::new(qemu)
        .args(["-device", "help"])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            print_error(&e);
            EXIT_INFRA
        })
}

/// Waits for SIGINT or SIGTERM; returns the exit code for it.
async fn signalled() -> u8 {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => EXIT_SIGINT,
        _ = term.recv() => EXIT_SIGTERM,
    }
}

/// Prints progress on stderr. `verdicts`: print each run's report when its
/// verdict is known (with passing checks listed when `Some(true)`), or
/// leave that to the caller (`None`).
fn progress_printer(tty: bool, verdicts: Option<bool>) -> impl Fn(&str, Progress) + Sync {
    move |profile: &str, p: Progress| {
        let line = match p {
            Progress::Started { domain } => format!("{profile}: booting {domain}"),
            Progress::KernelUp { secs } => {
                format!("{profile}: kernel up, probe started after {secs:.1} s")
            }
            Progress::Captured { file } if tty => format!("{profile}: captured {file}"),
            Progress::Captured { .. } => return,
            Progress::Retrying { why } => format!("{profile}: {why}; booting once more"),
            Progress::ShellReady { domain } => {
                format!("{profile}: shell ready on the console of {domain}")
            }
            Progress::Verdict { report } => match verdicts {
                Some(verbose) => {
                    eprint!("{}", report.to_human(verbose));
                    return;
                }
                None => return,
            },
            Progress::TeardownFailed { why } => format!("error: {profile}: {why}"),
        };
        eprintln!("{line}");
    }
}

#[allow(clippy::too_many_arguments)]
pub fn cmd_run(
    profiles: Vec<String>,
    args: &RunArgs,
    out: Option<PathBuf>,
    json: bool,
    junit_path: Option<PathBuf>,
    jobs: u32,
    verbose: bool,
    strict: bool,
) -> u8 {
    let since = std::time::Instant::now();
    let profiles = if profiles.is_empty() {
        vec!["reference".to_string()]
    } else {
        profiles
    };
    // Every profile is checked before anything starts.
    let mut topologies: Vec<Topology> = Vec::new();
    let mut bad = false;
    for p in &profiles {
        match load_run_topology(p, args) {
            Ok(t) => topologies.push(t),
            Err(_) => bad = true,
        }
    }
    if bad {
        return EXIT_INVALID;
    }
    let Host {
        accel,
        uri,
        appliance,
        hv,
    } = match prepare_host(args) {
        Ok(h) => h,
        Err(c) => return c,
    };
    // The run's files: --out DIR, or a private temporary directory removed at the end.
    let tmp;
    let base = match &out {
        Some(d) => d.clone(),
        None => {
            tmp = match tempfile::Builder::new().prefix("nestlab-run-").tempdir() {
                Ok(t) => t,
                Err(e) => {
                    print_error(&e);
                    return EXIT_INFRA;
                }
            };
            tmp.path().to_path_buf()
        }
    };
    let mut dirs = Vec::new();
    for t in &topologies {
        let mut dir = base.join(&t.profile.name);
        let mut n = 2;
        while dirs.contains(&dir) {
            dir = base.join(format!("{}-{n}", t.profile.name));
            n += 1;
        }
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("error: cannot create {}: {e}", dir.display());
            return EXIT_INFRA;
        }
        dirs.push(dir);
    }
    // Profiles this host's QEMU cannot run are skipped with the reason.
    let device_help = local_device_help(&uri);
    let mut skipped: Vec<(usize, Report)> = Vec::new();
    let mut runnable = Vec::new();
    for (i, (t, dir)) in topologies.into_iter().zip(dirs).enumerate() {
        let missing = device_help
            .as_deref()
            .map(|h| missing_devices(&t, h))
            .unwrap_or_default();
        if missing.is_empty() {
            runnable.push((i, t, dir));
        } else {
            let why = format!("this host's QEMU lacks {}", missing.join(", "));
            let r = Report::without_checks(&t.profile.name, Verdict::Skipped, why);
            eprint!("{}", r.to_human(false));
            skipped.push((i, r));
        }
    }
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    let timeouts = Timeouts {
        boot: Duration::from_secs(args.boot_timeout),
        probe: Duration::from_secs(args.probe_timeout),
    };
    let tty = std::io::stderr().is_terminal();
    let appliance = Arc::new(appliance);
    let retries = args.retries;
    let result = rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(jobs as usize));
        let mut set = tokio::task::JoinSet::new();
        for (i, t, dir) in runnable {
            let (hv, appliance, sem) = (hv.clone(), appliance.clone(), sem.clone());
            let opts = RunOptions { accel, timeouts, dir, mode: Mode::Probe, retries, since };
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let printer = progress_printer(tty, Some(verbose));
                (i, run_profile(hv, &t, &appliance, &opts, &printer).await)
            });
        }
        let mut reports: Vec<(usize, Report)> = Vec::new();
        let sig = signalled();
        tokio::pin!(sig);
        loop {
            tokio::select! {
                next = set.join_next() => match next {
                    // Its report was printed with the verdict (Progress::Verdict).
                    Some(Ok((i, r))) => reports.push((i, r)),
                    Some(Err(e)) => {
                        eprintln!("error: a run panicked: {e}");
                        reports.push((usize::MAX, Report::without_checks("?", Verdict::Error, format!("internal error: {e}"))));
                    }
                    None => break Ok(reports),
                },
                code = &mut sig => {
                    eprintln!("nestlab: interrupted; destroying the domains in flight");
                    set.abort_all();
                    while set.join_next().await.is_some() {}
                    break Err(code);
                }
            }
        }
    });
    // Drop the runtime (and every blocking thread's handle) before the temp dir.
    drop(rt);
    let mut reports = match result {
        Ok(r) => r,
        Err(code) => return code,
    };
    reports.extend(skipped);
    reports.sort_by_key(|(i, _)| *i);
    let reports: Vec<Report> = reports.into_iter().map(|(_, r)| r).collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).unwrap_or_default()
        );
    }
    if let Some(path) = junit_path {
        if let Err(e) = std::fs::write(&path, junit(&reports)) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return EXIT_INFRA;
        }
    }
    if let Some(d) = &out {
        eprintln!("nestlab: run files kept in {}", d.display());
    }
    if strict && reports.iter().any(|r| r.verdict == Verdict::Skipped) {
        eprintln!("nestlab: --strict: a profile was skipped");
        return EXIT_INFRA;
    }
    if reports.iter().any(|r| r.verdict == Verdict::Error) {
        EXIT_INFRA
    } else if reports.iter().any(|r| r.verdict == Verdict::Fail) {
        EXIT_FAIL
    } else {
        EXIT_OK
    }
}

pub fn cmd_up(profile: &str, args: &RunArgs) -> u8 {
    let t = match load_run_topology(profile, args) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let Host {
        accel,
        uri,
        appliance,
        hv,
    } = match prepare_host(args) {
        Ok(h) => h,
        Err(c) => return c,
    };
    let dir = match tempfile::Builder::new().prefix("nestlab-up-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            print_error(&e);
            return EXIT_INFRA;
        }
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    let timeouts = Timeouts {
        boot: Duration::from_secs(args.boot_timeout),
        probe: Duration::from_secs(args.probe_timeout),
    };
    let opts = RunOptions {
        accel,
        timeouts,
        dir: dir.path().to_path_buf(),
        mode: Mode::Shell,
        retries: args.retries,
        since: std::time::Instant::now(),
    };
    let started: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let report = rt.block_on(async {
        let base = progress_printer(true, None);
        let printer = |p: &str, ev: Progress| {
            if let Progress::ShellReady { domain } = &ev {
                if let Ok(mut n) = started.lock() {
                    *n = Some(domain.clone());
                }
            }
            base(p, ev)
        };
        tokio::select! {
            r = run_profile(hv, &t, &appliance, &opts, &printer) => Ok(r),
            code = signalled() => Err(code),
        }
    });
    drop(rt);
    match report {
        Err(code) => code,
        Ok(r) if r.verdict == Verdict::Error => {
            eprint!("{}", r.to_human(false));
            EXIT_INFRA
        }
        Ok(r) => {
            eprint!("{}", r.to_human(false));
            let name = nestlab::runner::domain_name(
                &t.profile.name,
                &nestlab::guest::protocol::Nonce::generate(),
            );
            let _ = name;
            let name = started
                .lock()
                .ok()
                .and_then(|n| n.clone())
                .unwrap_or_else(|| "<name>".into());
            eprintln!(
                "The virtual host {name} is running, its probe's shell on the serial console:"
            );
            eprintln!("  virsh -c {uri} console {name}      (leave with Ctrl-])");
            eprintln!("Remove it with: nestlab down {name}   (or nestlab down --all)");
            println!("{name}");
            EXIT_OK
        }
    }
}

pub fn cmd_down(name: Option<String>, all: bool, list: bool, connect_uri: Option<String>) -> u8 {
    let uri = connect_uri.unwrap_or_else(default_uri);
    let hv = match connect(&uri) {
        Ok(h) => h,
        Err(c) => return c,
    };
    let owned = match hv.owned_domains() {
        Ok(o) => o,
        Err(e) => {
            print_error(&e);
            return EXIT_INFRA;
        }
    };
    if list || (name.is_none() && !all) {
        if owned.is_empty() {
            eprintln!("no nestlab domains on {uri}");
        }
        for d in &owned {
            println!(
                "{}\t{}",
                d.name,
                if d.active { "running" } else { "defined" }
            );
        }
        if !list {
            eprintln!("give a NAME or --all to remove");
            return EXIT_INVALID;
        }
        return EXIT_OK;
    }
    let targets: Vec<String> = match name {
        Some(n) => vec![n],
        None => owned.iter().map(|d| d.name.clone()).collect(),
    };
    let mut code = EXIT_OK;
    for n in targets {
        match hv.remove_owned(&n) {
            Ok(true) => eprintln!("removed {n}"),
            Ok(false) => {
                eprintln!("error: {n} is not a nestlab domain (no nestlab metadata): left alone");
                code = EXIT_INVALID;
            }
            Err(e) => {
                print_error(&e);
                code = EXIT_INFRA;
            }
        }
    }
    code
}
