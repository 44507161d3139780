//! The pool against fake hosts: uploads, spreading, unreachable and dying
//! hosts, devices and memory per host, cancellation on every host.

use super::*;

/// What a pool run told about its hosts, `uri: event` a line.
type HostLog = Arc<Mutex<Vec<String>>>;

async fn pool(
    hosts: Vec<PoolHost>,
    names: &[&str],
    jobs: usize,
    per_host: Option<usize>,
) -> (Vec<Report>, Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let events: HostLog = Arc::default();
    let ev = events.clone();
    let runs: HostLog = Arc::default();
    let rv = runs.clone();
    let reports = run_pool(
        hosts,
        Arc::new(TestKind),
        jobs_for(names, dir.path()),
        options(dir.path(), 0),
        PoolOptions {
            accel: crate::model::AccelChoice::Auto,
            jobs,
            jobs_per_host: per_host,
        },
        Arc::new(move |p: &str, e: Progress| {
            let line = match e {
                Progress::Uploading { file, done, total } => {
                    format!("{p}: uploading {file} {done}/{total}")
                }
                Progress::Staged { store, files, .. } => {
                    format!("{p}: staged in {store}: {files:?}")
                }
                Progress::Verdict { report } => format!("{p}: verdict {:?}", report.verdict),
                _ => return,
            };
            rv.lock().unwrap().push(line);
        }),
        Arc::new(move |uri: &str, e: HostEvent| {
            let line = match e {
                HostEvent::Ready { accel, slots, .. } => format!("{uri}: ready {accel} {slots}"),
                HostEvent::Unreachable { error } => format!("{uri}: unreachable {error}"),
                HostEvent::Lost { error } => format!("{uri}: lost {error}"),
            };
            ev.lock().unwrap().push(line);
        }),
        std::future::pending::<()>(),
    )
    .await
    .unwrap();
    let events = events.lock().unwrap().clone();
    let runs = runs.lock().unwrap().clone();
    (reports, events, runs)
}

fn jobs_for(names: &[&str], dir: &std::path::Path) -> Vec<Job> {
    jobs(names, dir)
}

fn passes(n: usize, profile: &str) -> Vec<Script> {
    (0..n)
        .map(|_| script(vec![passing(profile, false)]))
        .collect()
}

fn unreachable(uri: &str) -> PoolHost {
    let u = uri.to_string();
    PoolHost {
        uri: uri.to_string(),
        connect: Box::new(move || {
            Err(HostError::other(
                format!("cannot connect to {u}"),
                "unable to connect to server: Connection refused",
            ))
        }),
    }
}

#[tokio::test(start_paused = true)]
async fn a_remote_host_gets_each_file_uploaded_once() {
    let a = FakeHost::at(
        "qemu+tcp://a/system",
        Version(10, 0, 2),
        passes(2, "minimal"),
    );
    let (reports, events, runs) = pool(
        vec![PoolHost::connected(a.clone())],
        &["minimal", "minimal"],
        1,
        None,
    )
    .await;
    assert_eq!(events, ["qemu+tcp://a/system: ready tcg 2"]);
    for r in &reports {
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.to_human(true));
        assert_eq!(r.host.as_deref(), Some("qemu+tcp://a/system"));
    }
    assert_eq!(a.count("upload "), 2, "{:?}", a.log());
    let uploaded: Vec<u64> = reports
        .iter()
        .map(|r| r.timings.as_ref().unwrap().uploaded)
        .collect();
    assert_eq!(uploaded, [2000, 0]);
    assert!(
        runs.contains(&"minimal: uploading vmlinux 1000/1000".to_string()),
        "{runs:?}"
    );
    assert!(
        runs.iter()
            .any(|l| l.starts_with("minimal: staged in pool nestlab") && l.contains("Present")),
        "{runs:?}"
    );
    // A local host stages nothing and says nothing about it.
    let local = FakeHost::new(Version(10, 0, 2), passes(1, "minimal"));
    let (reports, _, runs) = pool(
        vec![PoolHost::connected(local.clone())],
        &["minimal"],
        1,
        None,
    )
    .await;
    assert_eq!(reports[0].timings.as_ref().unwrap().uploaded, 0);
    assert_eq!(local.count("upload "), 0);
    assert!(!runs.iter().any(|l| l.contains("staged")), "{runs:?}");
}

#[tokio::test(start_paused = true)]
async fn a_pool_spreads_runs_over_its_hosts_and_names_them() {
    let a = FakeHost::at(
        "qemu+tcp://a/system",
        Version(10, 0, 2),
        passes(4, "minimal"),
    );
    let b = FakeHost::at(
        "qemu+ssh://b/system",
        Version(10, 0, 2),
        passes(4, "minimal"),
    );
    let (reports, events, _) = pool(
        vec![
            PoolHost::connected(a.clone()),
            PoolHost::connected(b.clone()),
        ],
        &["minimal", "minimal", "minimal", "minimal"],
        2,
        None,
    )
    .await;
    assert_eq!(events.len(), 2, "{events:?}");
    let hosts: Vec<&str> = reports.iter().map(|r| r.host.as_deref().unwrap()).collect();
    // Two at once, least loaded first: one on each, then as they free up.
    assert_eq!(&hosts[..2], ["qemu+tcp://a/system", "qemu+ssh://b/system"]);
    assert!(reports.iter().all(|r| r.verdict == Verdict::Pass));
    assert_eq!(a.count("start ") + b.count("start "), 4);
    assert!(a.count("start ") >= 1 && b.count("start ") >= 1);
    assert!(a.leaked().is_empty() && b.leaked().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_host_is_reported_and_its_share_runs_elsewhere() {
    let b = FakeHost::at(
        "qemu+ssh://b/system",
        Version(10, 0, 2),
        passes(3, "minimal"),
    );
    let (reports, events, _) = pool(
        vec![
            unreachable("qemu+tcp://down/system"),
            PoolHost::connected(b.clone()),
        ],
        &["minimal", "minimal", "minimal"],
        4,
        None,
    )
    .await;
    assert!(events.contains(
        &"qemu+tcp://down/system: unreachable cannot connect to qemu+tcp://down/system: unable to connect to server: Connection refused".to_string()
    ), "{events:?}");
    assert!(reports
        .iter()
        .all(|r| r.verdict == Verdict::Pass && r.host.as_deref() == Some("qemu+ssh://b/system")));
    assert_eq!(b.count("start "), 3);

    // No host at all: every profile is an error naming each host.
    let (reports, _, _) = pool(
        vec![
            unreachable("qemu+tcp://x/system"),
            unreachable("qemu+tcp://y/system"),
        ],
        &["minimal", "sriov"],
        2,
        None,
    )
    .await;
    for r in &reports {
        assert_eq!(r.verdict, Verdict::Error);
        let e = r.error.as_deref().unwrap();
        assert!(
            e.starts_with("no host left to run it: qemu+tcp://x/system: cannot connect"),
            "{e}"
        );
        assert!(e.contains("; qemu+tcp://y/system: cannot connect"), "{e}");
        assert_eq!(r.host, None);
    }
    // One host: its own error.
    let (reports, _, _) = pool(vec![unreachable("qemu:///system")], &["minimal"], 1, None).await;
    assert_eq!(
        reports[0].error.as_deref(),
        Some("cannot connect to qemu:///system: unable to connect to server: Connection refused")
    );
}

#[tokio::test(start_paused = true)]
async fn a_profile_goes_only_where_its_devices_are() {
    // a has QEMU 7.2 (no igb), b 10.0: sriov can only run on b.
    let a = FakeHost::at(
        "qemu+tcp://a/system",
        Version(7, 2, 0),
        passes(2, "minimal"),
    );
    let b = FakeHost::at(
        "qemu+tcp://b/system",
        Version(10, 0, 2),
        vec![script(vec![passing("sriov", true)])],
    );
    let (reports, _, _) = pool(
        vec![
            PoolHost::connected(a.clone()),
            PoolHost::connected(b.clone()),
        ],
        &["sriov", "minimal"],
        2,
        Some(1),
    )
    .await;
    assert_eq!(reports[0].host.as_deref(), Some("qemu+tcp://b/system"));
    assert_eq!(reports[1].host.as_deref(), Some("qemu+tcp://a/system"));
    // Nobody has it: skipped, naming each host's lack.
    let c = FakeHost::at("qemu+tcp://c/system", Version(7, 2, 0), vec![]);
    let (reports, _, _) = pool(
        vec![PoolHost::connected(a.clone()), PoolHost::connected(c)],
        &["sriov"],
        2,
        None,
    )
    .await;
    assert_eq!(reports[0].verdict, Verdict::Skipped);
    let e = reports[0].error.as_deref().unwrap();
    assert!(
        e.starts_with(
            "no host of the pool can run it (qemu+tcp://a/system: this host's QEMU lacks QEMU device igb"
        ),
        "{e}"
    );
    assert!(
        e.contains("; qemu+tcp://c/system: this host's QEMU lacks"),
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn memory_limits_a_host_but_an_idle_host_takes_any_run() {
    // The fixture host has 9690 MiB; reference wants 8000: one at a time
    // however many slots, but it does run.
    let s = || script(vec![passing("reference", false)]);
    let a = FakeHost::at("qemu+tcp://a/system", Version(10, 0, 2), vec![s(), s()]);
    let mut t = topology("reference");
    t.profile.nested.clear();
    let dir = tempfile::tempdir().unwrap();
    let jobs: Vec<Job> = (0..2)
        .map(|i| {
            let d = dir.path().join(format!("r{i}"));
            std::fs::create_dir_all(&d).unwrap();
            Job {
                topology: t.clone(),
                dir: d,
            }
        })
        .collect();
    let t0 = tokio::time::Instant::now();
    let reports = run_pool(
        vec![PoolHost::connected(a.clone())],
        Arc::new(TestKind),
        jobs,
        options(dir.path(), 0),
        PoolOptions {
            accel: crate::model::AccelChoice::Auto,
            jobs: 4,
            jobs_per_host: Some(4),
        },
        Arc::new(|_: &str, _| {}),
        Arc::new(|_: &str, _| {}),
        std::future::pending::<()>(),
    )
    .await
    .unwrap();
    assert!(
        reports.iter().all(|r| r.verdict == Verdict::Pass),
        "{:?}",
        reports[0].error
    );
    // The second started only after the first one's boot (2 s of console)
    // ended: 4 s, where two at once take 2 s.
    assert!(t0.elapsed() >= secs(4), "{:?}", t0.elapsed());
    assert_eq!(a.count("start "), 2);
}

#[tokio::test(start_paused = true)]
async fn a_host_dying_mid_run_fails_its_runs_and_the_rest_go_elsewhere() {
    let dies = script(vec![vec![
        text("[    0.000000] Linux version 6.1.0\n"),
        Say::Wait(secs(1)),
        mark("init:1.0"),
        Say::KillHost,
    ]]);
    let a = FakeHost::at("qemu+tcp://a/system", Version(10, 0, 2), vec![dies]);
    let b = FakeHost::at(
        "qemu+tcp://b/system",
        Version(10, 0, 2),
        passes(2, "minimal"),
    );
    let (reports, events, _) = pool(
        vec![
            PoolHost::connected(a.clone()),
            PoolHost::connected(b.clone()),
        ],
        &["minimal", "minimal", "minimal"],
        2,
        Some(1),
    )
    .await;
    assert_eq!(reports[0].verdict, Verdict::Error);
    assert_eq!(reports[0].host.as_deref(), Some("qemu+tcp://a/system"));
    let e = reports[0].error.as_deref().unwrap();
    assert!(e.contains("the guest died"), "{e}");
    assert!(
        e.contains("could not be destroyed, it may still run on the host"),
        "{e}"
    );
    for r in &reports[1..] {
        assert_eq!(r.verdict, Verdict::Pass);
        assert_eq!(r.host.as_deref(), Some("qemu+tcp://b/system"));
    }
    assert!(
        events
            .iter()
            .any(|l| l.starts_with("qemu+tcp://a/system: lost ")),
        "{events:?}"
    );
    assert_eq!(a.count("start "), 1, "{:?}", a.log());
    // The dead host's domain is the one thing left (for its daemon's return).
    assert_eq!(a.leaked().len(), 1);
    assert!(b.leaked().is_empty());
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_pool_destroys_what_runs_on_every_host() {
    let hang = || script(vec![vec![mark("init:1.0"), Say::Hang]]);
    let a = FakeHost::at(
        "qemu+tcp://a/system",
        Version(10, 0, 2),
        vec![hang(), hang()],
    );
    let b = FakeHost::at(
        "qemu+tcp://b/system",
        Version(10, 0, 2),
        vec![hang(), hang()],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = run_pool(
        vec![
            PoolHost::connected(a.clone()),
            PoolHost::connected(b.clone()),
        ],
        Arc::new(TestKind),
        jobs(&["minimal", "minimal", "minimal", "minimal"], dir.path()),
        options(dir.path(), 0),
        PoolOptions {
            accel: crate::model::AccelChoice::Auto,
            jobs: 4,
            jobs_per_host: None,
        },
        Arc::new(|_: &str, _| {}),
        Arc::new(|_: &str, _| {}),
        async {
            tokio::time::sleep(secs(10)).await;
            143u8
        },
    )
    .await;
    assert_eq!(out.unwrap_err(), 143);
    assert_eq!((a.count("start "), b.count("start ")), (2, 2));
    assert!(a.leaked().is_empty(), "{:?}", a.log());
    assert!(b.leaked().is_empty(), "{:?}", b.log());
}
