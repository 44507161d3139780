//! Many profiles at once: at most `jobs` boots in flight, each profile's
//! report in the order the profiles were given, and everything in flight
//! destroyed when the caller's cancel future fires (Ctrl-C, SIGTERM).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use super::{run_profile, unmet, BootError, Progress, RunOptions};
use crate::guest::GuestKind;
use crate::host::Host;
use crate::model::Topology;
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
    let h = host.clone();
    let facts = match tokio::task::spawn_blocking(move || h.facts()).await {
        Ok(Ok(f)) => Some(f),
        // Every run reports the error itself.
        _ => None,
    };
    let mut reports: Vec<Option<Report>> = vec![None; jobs.len()];
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut set = tokio::task::JoinSet::new();
    let mut ids = std::collections::HashMap::new();
    for (i, job) in jobs.into_iter().enumerate() {
        let name = job.topology.profile.name.clone();
        let unmet = facts
            .as_ref()
            .map(|f| unmet(&job.topology, f, kind.as_ref(), template.accel))
            .unwrap_or_default();
        if !unmet.is_empty() {
            let why = unmet.join("; ");
            let r = Report::without_checks(&name, Verdict::Skipped, why);
            progress(
                &name,
                Progress::Verdict {
                    report: Box::new(r.clone()),
                },
            );
            reports[i] = Some(r);
            continue;
        }
        let (host, kind, sem, progress) =
            (host.clone(), kind.clone(), sem.clone(), progress.clone());
        let opts = RunOptions {
            dir: job.dir,
            ..template.clone()
        };
        let handle = set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            run_profile(host, &job.topology, kind.as_ref(), &opts, &*progress).await
        });
        ids.insert(handle.id(), (i, name));
    }
    tokio::pin!(cancel);
    loop {
        tokio::select! {
            next = set.join_next_with_id() => match next {
                Some(Ok((id, r))) => {
                    if let Some((i, _)) = ids.get(&id) {
                        reports[*i] = Some(r);
                    }
                }
                Some(Err(e)) => {
                    // A run panicked: its guard destroyed its domain.
                    if let Some((i, name)) = ids.get(&e.id()) {
                        let msg = BootError::Internal(e.to_string()).chain();
                        reports[*i] = Some(Report::without_checks(name, Verdict::Error, msg));
                    }
                }
                None => break,
            },
            out = &mut cancel => {
                set.abort_all();
                while set.join_next().await.is_some() {}
                return Err(out);
            }
        }
    }
    Ok(reports.into_iter().flatten().collect())
}
