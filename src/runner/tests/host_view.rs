//! `[tuning]` read on the host (libvirt's live XML, QEMU's threads)
//! before the destroy, and judged there.

use super::*;

/// `[tuning]` is read on the host after the agent's end and before the
/// destroy, and judged there.
#[tokio::test(start_paused = true)]
async fn host_tuning_is_read_before_the_destroy_and_checked() {
    let r = run("pinned", 0, vec![script(vec![passing("pinned", false)])]).await;
    assert_eq!(
        r.report.verdict,
        Verdict::Pass,
        "{}",
        r.report.to_human(true)
    );
    let log = r.host.log();
    let view = log
        .iter()
        .position(|l| l.starts_with("host-view "))
        .unwrap();
    let destroy = log.iter().position(|l| l.starts_with("destroy ")).unwrap();
    assert!(view < destroy, "{log:?}");
    for id in [
        "tuning.vcpu0.pin",
        "tuning.vcpu1.thread",
        "tuning.emulator.thread",
        "tuning.numatune.threads",
        "tuning.cell0.memnode",
    ] {
        let c = r.report.checks.iter().find(|c| c.id == id).unwrap();
        assert_eq!(c.status, Status::Pass, "{id}: {}", c.observed);
    }
    for f in ["capture/host-domain.xml", "capture/host-threads.txt"] {
        assert!(r.dir.path().join(f).exists(), "{f}");
    }
    // A profile without [tuning] never asks.
    let r = run("minimal", 0, vec![script(vec![passing("minimal", false)])]).await;
    assert_eq!(r.host.count("host-view"), 0);
}

/// The domain a run of `t` would define on a fake host.
async fn prepared(t: &Topology) -> crate::xml::domain::Domain {
    let host: Arc<dyn Host> = FakeHost::new(Version(10, 0, 2), vec![]);
    let facts = host.facts().unwrap();
    let (dom, _staging) = prepare(
        t,
        &TestKind,
        &host,
        &facts,
        &options(std::path::Path::new("/nonexistent"), 0),
        &"abcdef".parse().unwrap(),
        &|_| {},
    )
    .await
    .unwrap();
    dom
}

#[tokio::test(start_paused = true)]
async fn a_vcpu_thread_pinned_off_by_one_fails_its_check() {
    let t = topology("pinned");
    let dom = prepared(&t).await;
    let mut view = crate::host::fake::honoured(&dom.to_xml().unwrap());
    let threads = view.threads.take().unwrap();
    // vCPU 1's thread (tid 4245) allowed on host CPU 0 instead of 1.
    let moved = threads.replace(
        "/proc/4242/task/4245/status:Cpus_allowed_list:\t1",
        "/proc/4242/task/4245/status:Cpus_allowed_list:\t0",
    );
    assert_ne!(moved, threads);
    view.threads = Some(moved);
    let mut s = script(vec![passing("pinned", false)]);
    s.host_view = Some(Ok(view));
    let r = run("pinned", 0, vec![s]).await;
    let failed: Vec<&str> = r
        .report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(
        failed,
        ["tuning.vcpu1.thread"],
        "{}",
        r.report.to_human(false)
    );
}

#[tokio::test(start_paused = true)]
async fn a_remote_host_checks_through_libvirt_only() {
    let t = topology("pinned");
    let xml = prepared(&t).await.to_xml().unwrap();
    let mut s = script(vec![passing("pinned", false)]);
    s.host_view = Some(Ok(crate::host::HostView {
        domain_xml: xml,
        threads: None,
    }));
    let r = run("pinned", 0, vec![s]).await;
    assert_eq!(r.report.verdict, Verdict::Pass);
    let thread = r
        .report
        .checks
        .iter()
        .find(|c| c.id == "tuning.vcpu0.thread")
        .unwrap();
    assert_eq!(thread.status, Status::Skip);
    assert!(
        thread.message.contains("local libvirt URI"),
        "{}",
        thread.message
    );
    assert!(!r.dir.path().join("capture/host-threads.txt").exists());
}

#[tokio::test(start_paused = true)]
async fn a_host_view_that_fails_is_an_error_and_the_domain_goes() {
    let mut s = script(vec![passing("pinned", false)]);
    s.host_view = Some(Err(crate::host::HostError::other(
        "cannot read the QEMU threads of x",
        "no process runs it",
    )));
    let r = run("pinned", 0, vec![s]).await;
    assert_eq!(r.report.verdict, Verdict::Error);
    assert!(r.report.error.unwrap().contains("no process runs it"));
    assert!(r.host.leaked().is_empty());
}

#[tokio::test(start_paused = true)]
async fn tuning_the_host_cannot_honour_is_skipped_before_booting() {
    let text = crate::front::SHIPPED
        .iter()
        .find(|(n, _)| *n == "pinned")
        .unwrap()
        .1
        .replace("vcpus = \"1\"\ncpus = \"1\"", "vcpus = \"1\"\ncpus = \"5\"");
    let t = crate::resolve::resolve(&crate::load_profile_str(&text, "big").unwrap()).unwrap();
    let host = FakeHost::new(Version(10, 0, 2), vec![]);
    let dir = tempfile::tempdir().unwrap();
    let reports = run_all(
        host.clone(),
        Arc::new(TestKind),
        vec![Job {
            topology: t,
            dir: dir.path().to_path_buf(),
        }],
        options(dir.path(), 0),
        1,
        Arc::new(|_: &str, _| {}),
        std::future::pending::<()>(),
    )
    .await
    .unwrap();
    assert_eq!(reports[0].verdict, Verdict::Skipped);
    assert_eq!(
        reports[0].error.as_deref(),
        Some("this host cannot honour [tuning]: vCPU 1 is pinned to host CPU 5 but the host has CPUs 0-1")
    );
    assert_eq!(host.count("start"), 0);
    assert_eq!(
        crate::report::overall(&reports, true),
        crate::report::Overall::Skipped,
        "--strict makes it exit 3"
    );
}
