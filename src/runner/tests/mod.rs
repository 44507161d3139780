//! The runner against a scripted fake host ([`crate::host::fake`]), with
//! tokio's clock paused: every phase timeout, a quiet console, console
//! reopening, the guest dying, a kernel panic, the retry choice,
//! cancellation at each step, and a destroy on every path.
//!
//! One test per failure path; the pool's are in `pool.rs`, the host
//! view's in `host_view.rs`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::many::{run_all, run_pool, HostEvent, Job, PoolHost, PoolOptions};
use super::*;
use crate::capture::{CaptureSet, Scope, CAPTURES};
use crate::guest::{BootFiles, GuestKind};
use crate::host::fake::{FakeHost, Say, Script};
use crate::host::{Artifact, Version};
use crate::report::Status;

/// A guest kind that boots nothing real: fixed paths, the agent's
/// parameters on the command line like any kind.
struct TestKind;

impl GuestKind for TestKind {
    fn name(&self) -> &'static str {
        "test"
    }
    fn boot_files(
        &self,
        _t: &Topology,
        _facts: &HostFacts,
        _accel: Accel,
        params: &AgentParams,
    ) -> Result<BootFiles, GuestError> {
        let a = |n: &str| Artifact {
            path: format!("/cache/{n}").into(),
            name: n.to_string(),
        };
        Ok(BootFiles {
            kernel: a("vmlinux"),
            initrd: Some(a("initrd.img")),
            cmdline: format!("console=ttyS0 {}", params.to_cmdline()?),
            disks: Vec::new(),
        })
    }
}

fn topology(name: &str) -> Topology {
    crate::resolve::resolve(&crate::front::load_profile_arg(name).unwrap()).unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn text(s: impl Into<String>) -> Say {
    Say::Text(s.into())
}

fn mark(body: &str) -> Say {
    text(format!("::nestlab:{{nonce}}:{body}::\n"))
}

/// A real capture of `profile` (tests/fixtures/captures), as the agent
/// prints it: the topology files, and the nested files when `nested`.
fn captures(profile: &str, nested: bool) -> Vec<Say> {
    let dir = format!(
        "{}/tests/fixtures/captures/{profile}",
        env!("CARGO_MANIFEST_DIR")
    );
    let set = CaptureSet::read_dir(std::path::Path::new(&dir)).unwrap();
    let mut out = Vec::new();
    for c in CAPTURES {
        if matches!(c.scope, Scope::Workload | Scope::Libvirt) {
            continue;
        }
        // The host's view is read by the runner, never printed by the agent.
        if c.scope == Scope::Host || (c.scope == Scope::Nested && !nested) {
            continue;
        }
        if c.scope == Scope::Nested && c.file == crate::capture::NESTED.file {
            out.push(mark("nested:1"));
        }
        let content = set.get(c.file).unwrap_or("");
        out.push(mark(&format!("begin:{}", c.file)));
        out.push(text(content));
        if !content.is_empty() && !content.ends_with('\n') {
            out.push(text("\n"));
        }
        out.push(mark(&format!("end:{}:0", c.file)));
    }
    out
}

/// A whole successful boot of `profile`: a kernel line, the agent's init
/// marker, every capture, done.
fn passing(profile: &str, nested: bool) -> Vec<Say> {
    let mut v = vec![
        text("[    0.000000] Linux version 6.1.0\n"),
        Say::Wait(secs(2)),
        mark("init:2.10"),
    ];
    v.extend(captures(profile, nested));
    v.push(mark("done:3.40"));
    v.push(Say::Hang);
    v
}

fn script(consoles: Vec<Vec<Say>>) -> Script {
    Script {
        consoles,
        alive: true,
        ..Script::default()
    }
}

struct Run {
    report: Report,
    host: Arc<FakeHost>,
    events: Vec<String>,
    dir: tempfile::TempDir,
}

fn options(dir: &std::path::Path, retries: u32) -> RunOptions {
    RunOptions {
        accel: Accel::Tcg,
        timeouts: Timeouts::default(),
        disk_timeouts: super::phase::DISK_GUEST_TIMEOUTS,
        dir: dir.to_path_buf(),
        mode: Mode::Probe,
        retries,
        since: Instant::now(),
        always: false,
        kept: true,
    }
}

async fn run(profile: &str, retries: u32, scripts: Vec<Script>) -> Run {
    let host = FakeHost::new(Version(10, 0, 2), scripts);
    let dir = tempfile::tempdir().unwrap();
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let ev = events.clone();
    let progress = move |_: &str, p: Progress| {
        let s = match p {
            Progress::Started { .. } => "started".to_string(),
            Progress::KernelUp { .. } => "kernel-up".into(),
            Progress::Captured { file } => format!("captured {file}"),
            Progress::Uploading { file, done, total } => format!("uploading {file} {done}/{total}"),
            Progress::Staged { store, files, .. } => format!("staged in {store}: {files:?}"),
            Progress::Retrying { why } => format!("retrying {why}"),
            Progress::ShellReady { .. } => "shell".into(),
            Progress::Verdict { report } => format!("verdict {:?}", report.verdict),
            Progress::TeardownFailed { why } => format!("teardown-failed {why}"),
            Progress::Output { workload, line } => format!("output {workload}: {line}"),
        };
        ev.lock().unwrap().push(s);
    };
    let t = topology(profile);
    let report = run_profile(
        host.clone(),
        &t,
        &TestKind,
        &options(dir.path(), retries),
        &progress,
    )
    .await;
    let events = events.lock().unwrap().clone();
    Run {
        report,
        host,
        events,
        dir,
    }
}

#[tokio::test(start_paused = true)]
async fn a_passing_boot_is_judged_and_destroyed() {
    let r = run("minimal", 1, vec![script(vec![passing("minimal", false)])]).await;
    assert_eq!(
        r.report.verdict,
        Verdict::Pass,
        "{}",
        r.report.to_human(true)
    );
    assert!(r
        .report
        .checks
        .iter()
        .any(|c| c.id == "agent.captures" && c.status == Status::Pass));
    assert_eq!(r.host.count("destroy "), 1);
    assert!(r.host.leaked().is_empty());
    for f in [
        "domain.xml",
        "console.log",
        "report.json",
        "capture/numactl.txt",
    ] {
        assert!(r.dir.path().join(f).exists(), "{f}");
    }
    // Paths in the XML are what the host staged, not local ones.
    let xml = std::fs::read_to_string(r.dir.path().join("domain.xml")).unwrap();
    assert!(xml.contains("<kernel>/staged/vmlinux</kernel>"), "{xml}");
    assert_eq!(r.events.first().map(String::as_str), Some("started"));
    assert!(r.events.contains(&"kernel-up".to_string()));
    assert!(r.events.contains(&"captured numactl.txt".to_string()));
    assert_eq!(r.events.last().map(String::as_str), Some("verdict Pass"));
    let t = r.report.timings.unwrap();
    assert_eq!(t.retried, 0);
    assert_eq!(t.guest_done_uptime, Some(3.4));
}

#[tokio::test(start_paused = true)]
async fn a_missing_capture_fails_the_run() {
    let mut says = passing("minimal", false);
    // Drop kvm.txt's three lines (begin, content, end).
    let i = says
        .iter()
        .position(|s| matches!(s, Say::Text(t) if t.contains("begin:kvm.txt")))
        .unwrap();
    says.drain(i..i + 3);
    let r = run("minimal", 0, vec![script(vec![says])]).await;
    assert_eq!(r.report.verdict, Verdict::Fail);
    let c = r
        .report
        .checks
        .iter()
        .find(|c| c.id == "agent.captures")
        .unwrap();
    assert_eq!(c.status, Status::Fail);
    assert!(c.observed.contains("kvm.txt"), "{}", c.observed);
}

#[tokio::test(start_paused = true)]
async fn boot_phase_timeout_is_retried_then_reported() {
    let hang = vec![text("SeaBIOS\n"), Say::Hang];
    let r = run(
        "minimal",
        1,
        vec![script(vec![hang.clone()]), script(vec![hang])],
    )
    .await;
    assert_eq!(r.report.verdict, Verdict::Error);
    let e = r.report.error.as_deref().unwrap();
    assert!(e.contains("timed out after 120 s in the boot phase"), "{e}");
    assert!(e.contains("| SeaBIOS"), "{e}");
    assert_eq!(r.host.count("start "), 2);
    assert_eq!(r.host.count("destroy "), 2);
    assert!(r.host.leaked().is_empty());
    assert!(r.dir.path().join("console-attempt1.log").exists());
    assert!(r.events.iter().any(|e| e.starts_with("retrying timed out")));
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_passes_counts() {
    let r = run(
        "minimal",
        1,
        vec![
            script(vec![vec![Say::Hang]]),
            script(vec![passing("minimal", false)]),
        ],
    )
    .await;
    assert_eq!(r.report.verdict, Verdict::Pass);
    assert_eq!(r.report.timings.unwrap().retried, 1);
    assert!(r.host.leaked().is_empty());
}

#[tokio::test(start_paused = true)]
async fn quiet_console_in_the_probe_phase() {
    let says = vec![mark("init:1.0"), text("loading\n"), Say::Hang];
    let r = run("minimal", 0, vec![script(vec![says])]).await;
    let e = r.report.error.unwrap();
    assert!(
        e.contains("timed out after 60 s in the probe phase (the console printed nothing for 60 s"),
        "{e}"
    );
    assert_eq!(r.host.count("destroy "), 1);
}

#[tokio::test(start_paused = true)]
async fn probe_phase_budget_with_a_talking_console() {
    let mut says = vec![mark("init:1.0")];
    for _ in 0..40 {
        says.push(Say::Wait(secs(10)));
        says.push(text("still here\n"));
    }
    let r = run("minimal", 0, vec![script(vec![says])]).await;
    let e = r.report.error.unwrap();
    assert!(
        e.contains("timed out after 180 s in the probe phase (waiting for the agent's captures)"),
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn nested_phase_needs_heartbeats() {
    let mut says = vec![mark("init:1.0")];
    says.extend(captures("reference", false));
    says.push(mark("nested:1"));
    for _ in 0..3 {
        says.push(Say::Wait(secs(5)));
        says.push(mark("alive"));
    }
    says.push(Say::Hang);
    let r = run("reference", 0, vec![script(vec![says])]).await;
    let e = r.report.error.unwrap();
    assert!(
        e.contains("in the nested phase (the console printed nothing for 30 s"),
        "{e}"
    );
    assert!(r.host.leaked().is_empty());
}

#[tokio::test(start_paused = true)]
async fn nested_run_passes_with_its_files() {
    let r = run(
        "reference",
        0,
        vec![script(vec![passing("reference", true)])],
    )
    .await;
    assert_eq!(
        r.report.verdict,
        Verdict::Pass,
        "{}",
        r.report.to_human(false)
    );
    assert!(r.report.checks.iter().any(|c| c.id == "nested.boot"));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_console_is_reopened() {
    let all = passing("minimal", false);
    let cut = all.len() / 2;
    let (first, second) = (all[..cut].to_vec(), all[cut..].to_vec());
    let mut first = first;
    first.push(Say::End);
    let r = run("minimal", 0, vec![script(vec![first, second])]).await;
    assert_eq!(
        r.report.verdict,
        Verdict::Pass,
        "{}",
        r.report.to_human(false)
    );
    assert_eq!(r.host.count("console "), 2);
}

#[tokio::test(start_paused = true)]
async fn reopening_has_a_limit() {
    let ending = vec![text("x\n"), Say::End];
    let consoles = vec![ending; 10];
    let r = run("minimal", 0, vec![script(consoles)]).await;
    let e = r.report.error.unwrap();
    assert!(
        e.contains("the console stream closed 6 times while the domain kept running"),
        "{e}"
    );
    assert_eq!(
        r.host.count("console "),
        1 + session::MAX_CONSOLE_REOPENS as usize
    );
    assert_eq!(r.host.count("destroy "), 1);
}

#[tokio::test(start_paused = true)]
async fn the_guest_dying_is_noticed_at_once_and_not_retried() {
    let mut s = script(vec![vec![
        mark("init:1.0"),
        text("[ 1.0] oops\n"),
        Say::End,
    ]]);
    s.alive = false;
    let r = run("minimal", 1, vec![s]).await;
    let e = r.report.error.unwrap();
    assert!(
        e.contains("the guest died before the agent finished (QEMU exited"),
        "{e}"
    );
    assert!(e.contains("| [ 1.0] oops"), "{e}");
    assert_eq!(
        r.host.count("start "),
        1,
        "a dead guest is not booted again"
    );
    assert_eq!(r.host.count("destroy "), 1);
}

#[tokio::test(start_paused = true)]
async fn a_broken_stream_is_a_death() {
    let s = script(vec![vec![
        mark("init:1.0"),
        Say::Fail(crate::host::HostError::other(
            "console stream",
            "End of file while reading data",
        )),
    ]]);
    let r = run("minimal", 0, vec![s]).await;
    assert!(r
        .report
        .error
        .unwrap()
        .contains("End of file while reading data"));
    assert!(r.host.leaked().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_unanswerable_liveness_question_is_not_taken_for_gone() {
    let mut s = script(vec![vec![mark("init:1.0"), Say::End]]);
    s.active_error = Some(crate::host::HostError::other(
        "cannot look at it",
        "connection reset",
    ));
    let r = run("minimal", 0, vec![s]).await;
    let e = r.report.error.unwrap();
    assert!(
        e.contains("cannot be looked at: cannot look at it: connection reset"),
        "{e}"
    );
    assert_eq!(r.host.count("destroy "), 1);
}

#[tokio::test(start_paused = true)]
async fn a_kernel_panic_ends_the_run_at_once() {
    let s = script(vec![vec![
        text("[ 0.5] Kernel panic - not syncing: Attempted to kill init!\n"),
        Say::Hang,
    ]]);
    let r = run("minimal", 1, vec![s]).await;
    let e = r.report.error.unwrap();
    assert!(
        e.starts_with("the guest kernel panicked: Kernel panic - not syncing"),
        "{e}"
    );
    assert_eq!(r.host.count("start "), 1);
    assert_eq!(r.host.count("destroy "), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refused_start_is_an_error_without_a_domain() {
    let s = Script {
        start_error: Some(crate::host::HostError::other(
            "libvirt cannot start the domain",
            "unsupported configuration: IOMMU",
        )),
        ..Script::default()
    };
    let r = run("minimal", 1, vec![s]).await;
    let e = r.report.error.unwrap();
    assert!(e.contains("unsupported configuration: IOMMU"), "{e}");
    assert_eq!(r.host.count("start "), 0);
    assert_eq!(r.host.count("destroy"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_destroy_after_the_verdict_is_an_error() {
    let mut s = script(vec![passing("minimal", false)]);
    s.destroy_error = Some(crate::host::HostError::other("cannot destroy x", "busy"));
    let r = run("minimal", 0, vec![s]).await;
    assert_eq!(r.report.verdict, Verdict::Error);
    assert!(r
        .report
        .error
        .unwrap()
        .contains("could not be destroyed: cannot destroy x: busy"));
    assert!(
        r.events.iter().any(|e| e == "verdict Pass"),
        "the verdict came first"
    );
    assert!(r.events.iter().any(|e| e.starts_with("teardown-failed")));
}

#[tokio::test(start_paused = true)]
async fn guest_step_errors_reach_the_report() {
    let mut says = passing("minimal", false);
    says.insert(
        3,
        mark("error:insmod:kvm_intel: can't insert: Operation not supported"),
    );
    let r = run("minimal", 0, vec![script(vec![says])]).await;
    assert_eq!(r.report.guest_errors.len(), 1);
    assert!(r
        .report
        .to_human(false)
        .contains("guest step failed: insmod: kvm_intel: can't insert"));
    assert!(r.report.to_json().contains("\"guest_errors\""));
    assert!(crate::report::junit(&[r.report]).contains("<system-err>guest step failed: insmod"));
}

#[tokio::test(start_paused = true)]
async fn shell_mode_leaves_the_domain_running() {
    let host = FakeHost::new(
        Version(10, 0, 2),
        vec![script(vec![vec![
            mark("init:1.0"),
            mark("done:2.0"),
            mark("shell"),
            Say::Hang,
        ]])],
    );
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), 0);
    opts.mode = Mode::Shell;
    let shell = Arc::new(Mutex::new(false));
    let s2 = shell.clone();
    let r = run_profile(
        host.clone(),
        &topology("minimal"),
        &TestKind,
        &opts,
        &move |_: &str, p: Progress| {
            if matches!(p, Progress::ShellReady { .. }) {
                *s2.lock().unwrap() = true;
            }
        },
    )
    .await;
    assert!(*shell.lock().unwrap());
    assert_ne!(r.verdict, Verdict::Error);
    assert_eq!(host.count("destroy"), 0);
    assert_eq!(host.leaked().len(), 1);
}

/// Cancels a run (drops its future, as Ctrl-C does) at the moment `at`
/// says, and checks that its domain was destroyed.
async fn cancelled(scripts: Vec<Script>, wait_for_start: bool, after: Duration) -> Arc<FakeHost> {
    let host = FakeHost::new(Version(10, 0, 2), scripts);
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 1);
    let h = host.clone();
    let mut starting = host.starting.subscribe();
    let task = tokio::spawn(async move {
        run_profile(h, &topology("minimal"), &TestKind, &opts, &|_: &str, _| {}).await
    });
    if wait_for_start {
        starting.wait_for(|n| n.is_some()).await.unwrap();
    } else {
        tokio::time::sleep(after).await;
    }
    task.abort();
    let _ = task.await;
    // The guard's destroy runs when the blocking start returns.
    for _ in 0..200 {
        if host.count("start ") > 0 && host.leaked().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        std::thread::sleep(Duration::from_millis(5));
    }
    host
}

#[tokio::test(start_paused = true)]
async fn cancelled_while_libvirt_starts_the_domain() {
    let mut s = script(vec![passing("minimal", false)]);
    s.start_block_ms = 200;
    let host = cancelled(vec![s], true, Duration::ZERO).await;
    assert_eq!(host.count("start "), 1);
    assert!(host.leaked().is_empty(), "{:?}", host.log());
}

#[tokio::test(start_paused = true)]
async fn cancelled_while_booting() {
    let host = cancelled(
        vec![script(vec![vec![text("booting\n"), Say::Hang]])],
        false,
        secs(30),
    )
    .await;
    assert_eq!(host.count("resume "), 1);
    assert!(host.leaked().is_empty(), "{:?}", host.log());
}

#[tokio::test(start_paused = true)]
async fn cancelled_while_probing() {
    let host = cancelled(
        vec![script(vec![vec![
            mark("init:1.0"),
            Say::Wait(secs(1)),
            text("x\n"),
            Say::Hang,
        ]])],
        false,
        secs(20),
    )
    .await;
    assert!(host.leaked().is_empty(), "{:?}", host.log());
}

#[tokio::test(start_paused = true)]
async fn cancelled_between_a_retry_and_the_next_boot() {
    // The first boot times out at 120 s; cancel while the second one boots.
    let host = cancelled(
        vec![script(vec![vec![Say::Hang]]), script(vec![vec![Say::Hang]])],
        false,
        secs(125),
    )
    .await;
    assert_eq!(host.count("start "), 2);
    assert!(host.leaked().is_empty(), "{:?}", host.log());
}

fn jobs(names: &[&str], dir: &std::path::Path) -> Vec<Job> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let d = dir.join(format!("{n}-{i}"));
            std::fs::create_dir_all(&d).unwrap();
            Job {
                topology: topology(n),
                dir: d,
            }
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn many_runs_in_order_and_skips_what_the_host_cannot() {
    let host = FakeHost::new(
        Version(7, 2, 0),
        vec![
            script(vec![passing("minimal", false)]),
            script(vec![passing("minimal", false)]),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let reports = run_all(
        host.clone(),
        Arc::new(TestKind),
        jobs(&["minimal", "sriov", "minimal"], dir.path()),
        options(dir.path(), 0),
        2,
        Arc::new(|_: &str, _| {}),
        std::future::pending::<()>(),
    )
    .await
    .unwrap();
    let verdicts: Vec<Verdict> = reports.iter().map(|r| r.verdict).collect();
    assert_eq!(verdicts, [Verdict::Pass, Verdict::Skipped, Verdict::Pass]);
    assert!(reports[1]
        .error
        .as_deref()
        .unwrap()
        .contains("QEMU device igb"));
    assert!(reports[1]
        .error
        .as_deref()
        .unwrap()
        .contains("this host has 7.2.0"));
    assert!(host.leaked().is_empty());
}

#[tokio::test(start_paused = true)]
async fn cancelling_many_destroys_every_domain_in_flight() {
    let hang = || script(vec![vec![mark("init:1.0"), Say::Hang]]);
    let host = FakeHost::new(Version(10, 0, 2), vec![hang(), hang(), hang()]);
    let dir = tempfile::tempdir().unwrap();
    let out = run_all(
        host.clone(),
        Arc::new(TestKind),
        jobs(&["minimal", "minimal", "minimal"], dir.path()),
        options(dir.path(), 0),
        3,
        Arc::new(|_: &str, _| {}),
        async {
            tokio::time::sleep(secs(10)).await;
            130u8
        },
    )
    .await;
    assert_eq!(out.unwrap_err(), 130);
    assert_eq!(host.count("start "), 3);
    assert!(host.leaked().is_empty(), "{:?}", host.log());
}

#[test]
fn only_timeouts_are_retried() {
    let timeout = BootError::Timeout {
        phase: PhaseKind::Nested,
        secs: 30,
        what: String::new(),
        tail: String::new(),
    };
    assert!(timeout.is_retryable());
    for e in [
        BootError::Panic {
            line: String::new(),
            tail: String::new(),
        },
        BootError::Died {
            why: String::new(),
            tail: String::new(),
        },
        BootError::Internal(String::new()),
    ] {
        assert!(!e.is_retryable(), "{e}");
    }
}

/// `minimal` with one workload sharing `share` read-only.
fn with_workload(share: &std::path::Path, timeout: u32) -> Topology {
    let text = format!(
        "{}\n[[workload]]\nname = \"unit\"\ncommand = \"make test\"\nshares = [\"{}:/src\"]\ntimeout = {timeout}\n",
        crate::front::SHIPPED
            .iter()
            .find(|(n, _)| *n == "minimal")
            .unwrap()
            .1,
        share.display()
    );
    crate::resolve::resolve(&crate::front::load_profile_str(&text, "t.toml").unwrap()).unwrap()
}

/// A boot of `minimal` with one share up to the gate, then what `after`
/// says.
fn to_the_gate(after: Vec<Say>) -> Vec<Say> {
    let mut v = vec![mark("init:1.0")];
    v.extend(captures("minimal-workload", false));
    v.push(mark("gate"));
    v.extend(after);
    v
}

async fn run_topology(
    t: &Topology,
    scripts: Vec<Script>,
    dir: &std::path::Path,
) -> (Report, Arc<FakeHost>, Vec<String>) {
    let host = FakeHost::new(Version(10, 0, 2), scripts);
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let ev = events.clone();
    let progress = move |_: &str, p: Progress| {
        if let Progress::Output { line, .. } = p {
            ev.lock().unwrap().push(line);
        }
    };
    let r = run_profile(host.clone(), t, &TestKind, &options(dir, 0), &progress).await;
    let lines = events.lock().unwrap().clone();
    (r, host, lines)
}

#[tokio::test(start_paused = true)]
async fn workloads_run_after_the_gate_and_their_output_streams() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t = with_workload(src.path(), 600);
    // A JUnit file the workload "wrote" into the artifacts folder.
    std::fs::create_dir_all(dir.path().join("share/artifacts")).unwrap();
    std::fs::write(
        dir.path().join("share/artifacts/junit.xml"),
        "<testsuite name=\"s\"><testcase name=\"a\"/><testcase name=\"b\"><failure message=\"no\"/></testcase></testsuite>",
    )
    .unwrap();
    let after = vec![
        Say::Wait(secs(1)),
        mark("begin:workload-unit.log"),
        text("running 2 tests\n"),
        Say::Wait(secs(300)),
        mark("alive"),
        text("ok\n"),
        mark("end:workload-unit.log:0"),
        mark("begin:workloads.txt"),
        text("workload unit exit=0 seconds=301.00 timed_out=no\n"),
        mark("end:workloads.txt:0"),
        mark("done:400"),
    ];
    // The heartbeat every 10 s, as the agent prints it.
    let mut says = to_the_gate(vec![]);
    for s in after {
        if let Say::Wait(d) = s {
            let mut left = d;
            while left > Duration::ZERO {
                let step = left.min(secs(10));
                says.push(Say::Wait(step));
                says.push(mark("alive"));
                left -= step;
            }
        } else {
            says.push(s);
        }
    }
    says.push(Say::Hang);
    let (r, host, lines) = run_topology(&t, vec![script(vec![says])], dir.path()).await;
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.to_human(true));
    let c = r.checks.iter().find(|c| c.id == "workload.unit").unwrap();
    assert_eq!(c.status, Status::Pass);
    assert_eq!(lines, ["running 2 tests", "ok"]);
    assert!(host.leaked().is_empty());
    // The host said go; the artifacts came back, the control files went.
    assert!(dir.path().join("artifacts/junit.xml").exists());
    assert!(!dir.path().join("share").exists());
    assert_eq!(r.user_junit.len(), 2);
    assert!(r.artifacts.is_some());
    // The host's /usr, the share and the run folder are devices of the
    // topology.
    assert_eq!(t.shares.len(), 3);
    let params =
        AgentParams::for_topology(&t, "ab".parse().unwrap(), vec![], Mode::Probe, 1).unwrap();
    let cmdline = params.to_cmdline().unwrap();
    assert!(
        cmdline.contains(" nestlab.shares=nestlab0:9p:ro:gate:/usr,nestlab1:9p:ro:boot:/src,nestlab2:9p:rw:boot:/run/nestlab "),
        "{cmdline}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_topology_check_stops_the_workloads() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t = with_workload(src.path(), 60);
    // numactl shows two CPUs on no node: numa.node0.cpus fails.
    let mut says = vec![mark("init:1.0")];
    for s in captures("minimal-workload", false) {
        says.push(match s {
            Say::Text(x) if x.contains("node 0 cpus: 0 1") => {
                Say::Text(x.replace("node 0 cpus: 0 1", "node 0 cpus: 0"))
            }
            other => other,
        });
    }
    let gate_file = dir.path().join("share/control/gate");
    says.push(mark("gate"));
    says.push(Say::Wait(secs(1)));
    says.push(mark("begin:workloads.txt"));
    says.push(text("workload unit skipped: the topology checks failed\n"));
    says.push(mark("end:workloads.txt:0"));
    says.push(mark("done:9"));
    says.push(Say::Hang);
    let host = FakeHost::new(Version(10, 0, 2), vec![script(vec![says])]);
    let g = gate_file.clone();
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let s2 = seen.clone();
    let progress = move |_: &str, p: Progress| {
        if let Progress::Captured { file } = p {
            if file == "workloads.txt" {
                *s2.lock().unwrap() = std::fs::read_to_string(&g).ok();
            }
        }
    };
    let r = run_profile(
        host.clone(),
        &t,
        &TestKind,
        &options(dir.path(), 0),
        &progress,
    )
    .await;
    let gate = seen.lock().unwrap().clone().unwrap();
    assert!(
        gate.starts_with("stop the topology checks failed (numa.node0.cpus)"),
        "{gate}"
    );
    assert_eq!(r.verdict, Verdict::Fail);
    let c = r.checks.iter().find(|c| c.id == "workload.unit").unwrap();
    assert_eq!(c.status, Status::Skip);
    assert!(host.leaked().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_silent_agent_after_the_gate_is_a_workload_phase_timeout() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t = with_workload(src.path(), 600);
    let says = to_the_gate(vec![mark("begin:workload-unit.log"), Say::Hang]);
    let (r, host, _) = run_topology(&t, vec![script(vec![says])], dir.path()).await;
    let e = r.error.unwrap();
    assert!(
        e.contains("in the workload phase (the console printed nothing for 60 s"),
        "{e}"
    );
    assert!(host.leaked().is_empty());
}

mod host_view;
mod pool;
