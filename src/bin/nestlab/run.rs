//! `nestlab run`: the terminal side of [`nestlab::runner::many::run_pool`]:
//! the hosts, run directories, progress on stderr, the reports, the exit
//! code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nestlab::guest::agent::Mode;
use nestlab::host::Transfer;
use nestlab::model::Accel;
use nestlab::report::{junit, mib, overall, Overall, Report};
use nestlab::runner::many::{run_pool, HostEvent, Job, PoolHost, PoolOptions};
use nestlab::runner::{Progress, RunOptions, Timeouts};

use crate::args::{RunArgs, RunCmd};
use crate::common::{
    connect_hint, guest_kinds, load_run_topology, open, print_error, runtime, signalled, uris,
    CliWork,
};
use crate::exit;

/// The timeouts the arguments ask for, for the appliance and for a guest
/// with a system disk: each guest kind's defaults where they say nothing.
pub fn timeouts(args: &RunArgs) -> (Timeouts, Timeouts) {
    let with = |defaults: Timeouts| Timeouts {
        boot: args
            .boot_timeout
            .map(Duration::from_secs)
            .unwrap_or(defaults.boot),
        probe: args
            .probe_timeout
            .map(Duration::from_secs)
            .unwrap_or(defaults.probe),
        // Each run's from its workloads' own timeouts.
        workloads: Duration::ZERO,
    };
    (
        with(Timeouts::default()),
        with(nestlab::runner::phase::DISK_GUEST_TIMEOUTS),
    )
}

/// Where workloads' output lines go: stdout (stderr under `--json`, which
/// owns stdout), prefixed with the profile's name when several run.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Print to stderr.
    pub to_stderr: bool,
    /// Prefix with `[profile] `.
    pub prefix: bool,
}

/// Prints progress on stderr. `verdicts`: print each run's report when its
/// verdict is known (with passing checks listed when `Some(true)`), or
/// leave that to the caller (`None`).
pub fn progress_printer(
    tty: bool,
    verdicts: Option<bool>,
    output: Output,
) -> impl Fn(&str, Progress) + Send + Sync {
    move |profile: &str, p: Progress| {
        let line = match p {
            Progress::Output { line, .. } => {
                let text = if output.prefix {
                    format!("[{profile}] {line}")
                } else {
                    line
                };
                if output.to_stderr {
                    eprintln!("{text}");
                } else {
                    println!("{text}");
                }
                return;
            }
            Progress::Started { domain } => format!("{profile}: booting {domain}"),
            Progress::KernelUp { secs } => {
                format!("{profile}: kernel up, agent started after {secs:.1} s")
            }
            Progress::Captured { file } if tty => format!("{profile}: captured {file}"),
            Progress::Captured { .. } => return,
            Progress::Uploading { file, done, total } if tty => format!(
                "{profile}: uploading {file}: {:.1} of {:.1} MiB",
                mib(done),
                mib(total)
            ),
            Progress::Uploading { .. } => return,
            Progress::Staged { store, files, secs } => staged_line(profile, &store, &files, secs),
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

/// What staging the boot files on a remote host took, in a line:
/// `minimal: uploaded vmlinux (8.9 MiB in 0.21 s, 42.4 MiB/s), initrd.img
/// (...) to pool nestlab on URI` or `...: boot files already in pool ...`.
fn staged_line(profile: &str, store: &str, files: &[(String, Transfer)], secs: f64) -> String {
    let mut parts = Vec::new();
    let mut there = Vec::new();
    for (f, t) in files {
        match t {
            Transfer::Uploaded { bytes, secs } => parts.push(format!(
                "{f} ({:.1} MiB in {secs:.2} s, {:.1} MiB/s)",
                mib(*bytes),
                mib(*bytes) / secs.max(0.001)
            )),
            Transfer::Waited { secs } => {
                parts.push(format!("{f} (another run's upload, waited {secs:.2} s)"))
            }
            Transfer::Present | Transfer::Local => there.push(f.as_str()),
        }
    }
    if parts.is_empty() {
        return format!(
            "{profile}: boot files already in {store} ({}): nothing uploaded ({secs:.2} s)",
            there.join(", ")
        );
    }
    let mut line = format!("{profile}: uploaded {} to {store}", parts.join(", "));
    if !there.is_empty() {
        line.push_str(&format!("; already there: {}", there.join(", ")));
    }
    line
}

/// Prints what happens to the hosts on stderr.
fn host_printer(pool: bool) -> impl Fn(&str, HostEvent) + Send + Sync {
    move |uri: &str, e: HostEvent| match e {
        HostEvent::Ready {
            accel,
            why,
            slots,
            facts,
        } => {
            let tsc = match (accel, facts.tsc_hz()) {
                (Accel::Tcg, None) => {
                    "; no TSC frequency in its capabilities: lpj= left out".to_string()
                }
                _ => String::new(),
            };
            if pool {
                eprintln!(
                    "nestlab: {uri}: accelerator {accel} ({why}); libvirt {}, QEMU {}, {} CPUs, {} MiB: up to {slots} run(s) at once{tsc}",
                    facts.libvirt,
                    facts.qemu,
                    facts.cpus(),
                    facts.memory_mib()
                );
            } else {
                eprintln!(
                    "nestlab: accelerator {accel} ({why}); libvirt {} at {uri}, QEMU {}{tsc}",
                    facts.libvirt, facts.qemu
                );
            }
        }
        HostEvent::Unreachable { error } => {
            if pool {
                eprintln!("nestlab: {uri}: unreachable, left out of the pool: {error}");
            } else {
                eprintln!("error: {error}");
            }
            connect_hint(uri);
        }
        HostEvent::Lost { error } => {
            eprintln!("nestlab: {uri}: lost during a run ({error}); it takes no more runs");
        }
    }
}

/// Creates one run directory per profile under `base` (`name`, `name-2`, ...).
fn run_dirs(base: &std::path::Path, names: &[String]) -> Result<Vec<PathBuf>, u8> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for name in names {
        let mut dir = base.join(name);
        let mut n = 2;
        while dirs.contains(&dir) {
            dir = base.join(format!("{name}-{n}"));
            n += 1;
        }
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("error: cannot create {}: {e}", dir.display());
            return Err(exit::INFRA);
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

pub fn main(cmd: RunCmd) -> u8 {
    let since = std::time::Instant::now();
    let uris = match uris(&cmd.run.hosts) {
        Ok(u) => u,
        Err(c) => return c,
    };
    let profiles = if cmd.profiles.is_empty() {
        vec!["reference".to_string()]
    } else {
        cmd.profiles.clone()
    };
    // Every profile is checked before anything starts.
    let work = (!cmd.command.is_empty()).then(|| CliWork {
        argv: &cmd.command,
        shares: &cmd.shares,
        timeout: cmd.workload_timeout,
    });
    if work.is_none() && (!cmd.shares.is_empty() || cmd.workload_timeout.is_some()) {
        eprintln!("error: --share and --workload-timeout go with a command after --");
        return exit::INVALID;
    }
    let loaded: Vec<_> = profiles
        .iter()
        .map(|p| load_run_topology(p, &cmd.run, work.as_ref()))
        .collect();
    if loaded.iter().any(Result::is_err) {
        return exit::INVALID;
    }
    let topologies: Vec<_> = loaded.into_iter().flatten().collect();
    if topologies.iter().any(|t| !t.shares.is_empty())
        && !uris.iter().any(|u| nestlab::host::is_local_uri(u))
    {
        eprintln!(
            "error: --connect {}: workloads share folders of this machine, which a remote libvirt host cannot see; run them on qemu:///system or qemu:///session",
            uris.join(", ")
        );
        return exit::INVALID;
    }
    let kinds = match guest_kinds(&cmd.run, &topologies) {
        Ok(k) => k,
        Err(c) => return c,
    };
    let pool = cmd.run.hosts.pool.clone();
    let hosts: Vec<PoolHost> = uris
        .iter()
        .map(|u| {
            let (uri, pool) = (u.clone(), pool.clone());
            PoolHost {
                uri: u.clone(),
                connect: Box::new(move || open(&uri, &pool)),
            }
        })
        .collect();
    // The run's files: --out DIR, or a private temporary directory removed at the end.
    let tmp;
    let base = match &cmd.out {
        Some(d) => d.clone(),
        None => {
            tmp = match tempfile::Builder::new().prefix("nestlab-run-").tempdir() {
                Ok(t) => t,
                Err(e) => {
                    print_error(&e);
                    return exit::INFRA;
                }
            };
            tmp.path().to_path_buf()
        }
    };
    let names: Vec<String> = topologies.iter().map(|t| t.profile.name.clone()).collect();
    let dirs = match run_dirs(&base, &names) {
        Ok(d) => d,
        Err(c) => return c,
    };
    let jobs: Vec<Job> = topologies
        .into_iter()
        .zip(dirs)
        .map(|(topology, dir)| Job { topology, dir })
        .collect();
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    let template = RunOptions {
        // Each host's own, decided from its facts.
        accel: Accel::Tcg,
        timeouts: timeouts(&cmd.run).0,
        disk_timeouts: timeouts(&cmd.run).1,
        dir: base.clone(),
        mode: Mode::Probe,
        retries: cmd.run.retries,
        since,
        always: cmd.always,
        kept: cmd.out.is_some(),
    };
    let tty = std::io::stderr().is_terminal();
    let output = Output {
        to_stderr: cmd.json,
        prefix: profiles.len() > 1,
    };
    let printer = Arc::new(progress_printer(tty, Some(cmd.verbose), output));
    // One host: --jobs is what it runs at once (default 1). A pool: each
    // host as many as it has CPUs unless --jobs-per-host, and --jobs (if
    // given) over all of them.
    let single = uris.len() == 1;
    let at_once = match cmd.jobs {
        Some(n) => n as usize,
        None if single => 1,
        None => usize::MAX,
    };
    let opts = PoolOptions {
        accel: cmd.run.accel,
        jobs: at_once,
        jobs_per_host: cmd
            .jobs_per_host
            .map(|n| n as usize)
            .or(single.then_some(at_once)),
    };
    let result = rt.block_on(async {
        let interrupted = async {
            let code = signalled().await;
            eprintln!("nestlab: interrupted; destroying the domains in flight on every host");
            code
        };
        run_pool(
            hosts,
            Arc::new(kinds),
            jobs,
            template,
            opts,
            printer,
            Arc::new(host_printer(uris.len() > 1)),
            interrupted,
        )
        .await
    });
    // Drop the runtime (and every blocking thread's handle) before the temp dir.
    drop(rt);
    let reports = match result {
        Ok(r) => r,
        Err(code) => return code,
    };
    finish(&reports, &cmd)
}

/// Prints the JSON and writes the JUnit the arguments ask for; the exit code.
fn finish(reports: &[Report], cmd: &RunCmd) -> u8 {
    if cmd.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).unwrap_or_default()
        );
    }
    if let Some(path) = &cmd.junit {
        if let Err(e) = std::fs::write(path, junit(reports)) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return exit::INFRA;
        }
    }
    if let Some(d) = &cmd.out {
        eprintln!("nestlab: run files kept in {}", d.display());
    }
    match overall(reports, cmd.strict) {
        Overall::Skipped => {
            eprintln!("nestlab: --strict: a profile was skipped");
            exit::INFRA
        }
        Overall::Error => exit::INFRA,
        Overall::Fail => exit::FAIL,
        Overall::Pass => exit::OK,
    }
}
