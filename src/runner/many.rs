//! Many profiles at once, on one host or spread over a pool of hosts.
//!
//! [`run_pool`] connects to every host of the pool at once (a host that
//! cannot be reached is reported and left out), asks each for its facts,
//! decides each one's accelerator, and hands the profiles out as slots
//! free up:
//!
//! - a host runs at most `jobs_per_host` runs at once (default: as many as
//!   it has CPUs), and only as many as its memory holds (the profiles'
//!   memory together; a host with nothing running always takes one);
//! - `jobs` caps all hosts together;
//! - a profile goes to the least loaded host (running / slots) that has the
//!   QEMU devices it needs, the first given on a tie; a profile no host
//!   can run is reported `skipped` with the reason;
//! - a host whose connection died during a run (its daemon went away)
//!   takes no more runs; the runs still waiting go to the other hosts.
//!
//! Reports come back in the order the profiles were given, each naming
//! its host. When the caller's cancel future fires (Ctrl-C, SIGTERM),
//! every run in flight on every host is dropped, which destroys its
//! domain.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use super::{run_profile, unmet, BootError, Progress, RunOptions};
use crate::guest::GuestKind;
use crate::host::{Host, HostError, HostFacts};
use crate::model::{Accel, AccelChoice, Topology};
use crate::report::{Report, Verdict};

/// One profile to run, and where its files go.
#[derive(Debug, Clone)]
pub struct Job {
    /// The resolved profile.
    pub topology: Topology,
    /// Its run directory (created by the caller).
    pub dir: PathBuf,
}

/// Progress of every run, told with the profile's name.
pub type ProgressSink = Arc<dyn Fn(&str, Progress) + Send + Sync>;

/// How a host of a pool is reached: blocking, run on a blocking thread.
/// It should give up by itself on a daemon that does not answer (see
/// `connect_within` of the libvirt adapter).
pub type Connector = Box<dyn FnOnce() -> Result<Arc<dyn Host>, HostError> + Send>;

/// One host of a pool.
pub struct PoolHost {
    /// Its libvirt URI (what reports and messages name it by).
    pub uri: String,
    /// How to reach it.
    pub connect: Connector,
}

impl PoolHost {
    /// A host already connected.
    pub fn connected(host: Arc<dyn Host>) -> PoolHost {
        PoolHost {
            uri: host.uri().to_string(),
            connect: Box::new(move || Ok(host)),
        }
    }
}

/// How the pool hands out runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// `--accel`: decided per host from its facts when `auto`.
    pub accel: AccelChoice,
    /// Runs at once on all hosts together (`--jobs`).
    pub jobs: usize,
    /// Runs at once on one host (`--jobs-per-host`); `None`: as many as the
    /// host has CPUs.
    pub jobs_per_host: Option<usize>,
}

/// What happened to a host of the pool, told with its URI.
#[derive(Debug, Clone)]
pub enum HostEvent {
    /// Connected; it takes runs.
    Ready {
        /// Its accelerator.
        accel: Accel,
        /// Why that one.
        why: String,
        /// Runs it takes at once.
        slots: usize,
        /// What it offers.
        facts: Arc<HostFacts>,
    },
    /// It could not be reached: it takes no runs.
    Unreachable {
        /// Why.
        error: String,
    },
    /// Its connection died during a run: it takes no more runs.
    Lost {
        /// The run's error.
        error: String,
    },
}

/// What happens to hosts, told with their URI.
pub type HostSink = Arc<dyn Fn(&str, HostEvent) + Send + Sync>;

/// Runs at once on a host with `facts`: `jobs_per_host`, or its CPUs.
pub fn host_slots(facts: &HostFacts, jobs_per_host: Option<usize>) -> usize {
    jobs_per_host.unwrap_or_else(|| facts.cpus()).max(1)
}

/// Runs every job, `parallel` at a time, on `host` with guests of `kind`.
/// `template` gives the options every run shares (its `dir` is replaced
/// by each job's). A profile the host or the guest kind cannot run
/// ([`unmet`]: devices the host's QEMU lacks, a guest kernel without the
/// virtio IOMMU's driver, `[tuning]` the host cannot honour) is not booted:
/// its report says `skipped` and why.
///
/// Returns the reports in the order of `jobs`, or, when `cancel` finished
/// first, its output, after every domain in flight was destroyed.
pub async fn run_all<C: Future>(
    host: Arc<dyn Host>,
    kind: Arc<dyn GuestKind>,
    jobs: Vec<Job>,
    template: RunOptions,
    parallel: usize,
    progress: ProgressSink,
    cancel: C,
) -> Result<Vec<Report>, C::Output> {
    let opts = PoolOptions {
        accel: AccelChoice::Fixed(template.accel),
        jobs: parallel,
        jobs_per_host: Some(parallel),
    };
    run_pool(
        vec![PoolHost::connected(host)],
        kind,
        jobs,
        template,
        opts,
        progress,
        Arc::new(|_: &str, _| {}),
        cancel,
    )
    .await
}

/// A host of the pool while it runs.
struct Member {
    uri: String,
    /// None: unreachable or lost, with why.
    host: Result<Arc<dyn Host>, String>,
    facts: Option<Arc<HostFacts>>,
    accel: Accel,
    slots: usize,
    running: usize,
    memory_mib: u64,
}

impl Member {
    fn usable(&self) -> bool {
        self.host.is_ok()
    }
}

/// Runs every job on the hosts of `hosts` with guests of `kind` (see the
/// module's docs for how they are handed out); `template` gives the
/// options every run shares (its `accel` is each host's, its `dir` each
/// job's).
///
/// Returns the reports in the order of `jobs`, or, when `cancel` finished
/// first, its output, after every domain in flight on every host was
/// destroyed.
#[allow(clippy::too_many_arguments)]
pub async fn run_pool<C: Future>(
    hosts: Vec<PoolHost>,
    kind: Arc<dyn GuestKind>,
    jobs: Vec<Job>,
    template: RunOptions,
    opts: PoolOptions,
    progress: ProgressSink,
    host_events: HostSink,
    cancel: C,
) -> Result<Vec<Report>, C::Output> {
    tokio::pin!(cancel);
    // Connect to every host at once; each connector gives up by itself.
    let mut connecting = tokio::task::JoinSet::new();
    for (i, h) in hosts.into_iter().enumerate() {
        let PoolHost { uri, connect } = h;
        connecting.spawn_blocking(move || {
            let r = connect().and_then(|host| host.facts().map(|f| (host, f)));
            (i, uri, r)
        });
    }
    let mut members: Vec<Option<Member>> = Vec::new();
    loop {
        tokio::select! {
            next = connecting.join_next() => match next {
                Some(Ok((i, uri, r))) => {
                    if members.len() <= i {
                        members.resize_with(i + 1, || None);
                    }
                    members[i] = Some(member(uri, r, opts, &host_events));
                }
                Some(Err(e)) => {
                    // A connector panicked: nothing to name it by but the error.
                    host_events("?", HostEvent::Unreachable { error: e.to_string() });
                }
                None => break,
            },
            out = &mut cancel => return Err(out),
        }
    }
    let mut members: Vec<Member> = members.into_iter().flatten().collect();

    let mut reports: Vec<Option<Report>> = vec![None; jobs.len()];
    let mut pending: VecDeque<usize> = (0..jobs.len()).collect();
    let jobs: Vec<Arc<Job>> = jobs.into_iter().map(Arc::new).collect();
    let cap = opts.jobs.max(1);
    let mut set = tokio::task::JoinSet::new();
    let mut ids: HashMap<tokio::task::Id, (usize, usize)> = HashMap::new();
    let single = members.len() == 1;
    loop {
        // Hand out what can start now, in order, without letting a profile
        // that must wait hold up the ones behind it.
        let mut k = 0;
        while k < pending.len() && set.len() < cap {
            let j = pending[k];
            let job = &jobs[j];
            let need_mib = job.topology.profile.memory.mib();
            let able: Vec<usize> = (0..members.len())
                .filter(|&h| members[h].usable())
                .filter(|&h| {
                    members[h].facts.as_ref().is_some_and(|f| {
                        unmet(&job.topology, f, kind.as_ref(), members[h].accel).is_empty()
                    })
                })
                .collect();
            if able.is_empty() {
                pending.remove(k);
                let r = nobody_can_run(&job.topology, &members, kind.as_ref(), single);
                progress(
                    &r.profile,
                    Progress::Verdict {
                        report: Box::new(r.clone()),
                    },
                );
                reports[j] = Some(r);
                continue;
            }
            let free = able.into_iter().filter(|&h| {
                let m = &members[h];
                let fits = m.running == 0
                    || m.facts
                        .as_ref()
                        .is_some_and(|f| m.memory_mib + need_mib <= f.memory_mib());
                m.running < m.slots && fits
            });
            // Least loaded first; the first given on a tie.
            let best = free.min_by(|&a, &b| {
                let load = |h: usize| members[h].running as f64 / members[h].slots as f64;
                load(a).total_cmp(&load(b)).then(a.cmp(&b))
            });
            let Some(h) = best else {
                k += 1;
                continue;
            };
            let m = &mut members[h];
            let Ok(host) = m.host.clone() else {
                k += 1;
                continue;
            };
            pending.remove(k);
            m.running += 1;
            m.memory_mib += need_mib;
            let run_opts = RunOptions {
                accel: m.accel,
                dir: job.dir.clone(),
                ..template.clone()
            };
            let (kind, progress, job) = (kind.clone(), progress.clone(), job.clone());
            let handle = set.spawn(async move {
                run_profile(host, &job.topology, kind.as_ref(), &run_opts, &*progress).await
            });
            ids.insert(handle.id(), (j, h));
        }
        if set.is_empty() {
            // Nothing runs: whatever still waits has no host that can take it.
            for j in pending.drain(..) {
                let r = nobody_can_run(&jobs[j].topology, &members, kind.as_ref(), single);
                progress(
                    &r.profile,
                    Progress::Verdict {
                        report: Box::new(r.clone()),
                    },
                );
                reports[j] = Some(r);
            }
            break;
        }
        tokio::select! {
            next = set.join_next_with_id() => {
                let (id, report) = match next {
                    Some(Ok((id, r))) => (id, Some(r)),
                    Some(Err(e)) => (e.id(), None),
                    None => continue,
                };
                let Some((j, h)) = ids.remove(&id) else { continue };
                let report = report.unwrap_or_else(|| {
                    // A run panicked: its guard destroyed its domain.
                    let msg = BootError::Internal("a run panicked".into()).chain();
                    let mut r = Report::without_checks(&jobs[j].topology.profile.name, Verdict::Error, msg);
                    r.host = Some(members[h].uri.clone());
                    r
                });
                let m = &mut members[h];
                m.running -= 1;
                m.memory_mib -= jobs[j].topology.profile.memory.mib();
                if report.verdict == Verdict::Error {
                    if let Ok(host) = &m.host {
                        if !host.is_alive() {
                            let error = report.error.clone().unwrap_or_default();
                            let first = error.lines().next().unwrap_or("").to_string();
                            m.host = Err(format!("its connection broke during a run ({first})"));
                            host_events(&m.uri, HostEvent::Lost { error: first });
                        }
                    }
                }
                reports[j] = Some(report);
            }
            out = &mut cancel => {
                set.abort_all();
                while set.join_next().await.is_some() {}
                return Err(out);
            }
        }
    }
    Ok(reports.into_iter().flatten().collect())
}

/// A pool member from its connection's outcome; tells `events`.
fn member(
    uri: String,
    r: Result<(Arc<dyn Host>, Arc<HostFacts>), HostError>,
    opts: PoolOptions,
    events: &HostSink,
) -> Member {
    match r {
        Ok((host, facts)) => {
            let (accel, why) = facts.choose_accel(opts.accel);
            let slots = host_slots(&facts, opts.jobs_per_host);
            events(
                &uri,
                HostEvent::Ready {
                    accel,
                    why,
                    slots,
                    facts: facts.clone(),
                },
            );
            Member {
                uri,
                host: Ok(host),
                facts: Some(facts),
                accel,
                slots,
                running: 0,
                memory_mib: 0,
            }
        }
        Err(e) => {
            let error = e.to_string();
            events(
                &uri,
                HostEvent::Unreachable {
                    error: error.clone(),
                },
            );
            Member {
                uri,
                host: Err(error),
                facts: None,
                accel: Accel::Tcg,
                slots: 0,
                running: 0,
                memory_mib: 0,
            }
        }
    }
}

/// The report of a profile no usable host can run: skipped when the hosts
/// cannot run it ([`unmet`]: a device their QEMU lacks, what the guest kind
/// lacks, `[tuning]` they cannot honour), an error when no host is left.
fn nobody_can_run(t: &Topology, members: &[Member], kind: &dyn GuestKind, single: bool) -> Report {
    let name = &t.profile.name;
    let lacking: Vec<(&Member, Vec<String>)> = members
        .iter()
        .filter(|m| m.usable())
        .filter_map(|m| m.facts.as_ref().map(|f| (m, unmet(t, f, kind, m.accel))))
        .filter(|(_, why)| !why.is_empty())
        .collect();
    if !lacking.is_empty() {
        let why = if single {
            lacking[0].1.join("; ")
        } else {
            let per: Vec<String> = lacking
                .iter()
                .map(|(m, why)| format!("{}: {}", m.uri, why.join("; ")))
                .collect();
            format!("no host of the pool can run it ({})", per.join("; "))
        };
        let mut r = Report::without_checks(name, Verdict::Skipped, why);
        if single {
            r.host = Some(lacking[0].0.uri.clone());
        }
        return r;
    }
    let why: Vec<String> = members
        .iter()
        .filter_map(|m| m.host.as_ref().err().map(|e| format!("{}: {e}", m.uri)))
        .collect();
    let msg = if single && why.len() == 1 {
        // One host: its own error, as it is.
        members[0].host.as_ref().err().cloned().unwrap_or_default()
    } else {
        format!("no host left to run it: {}", why.join("; "))
    };
    Report::without_checks(name, Verdict::Error, msg)
}
