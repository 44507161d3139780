//! Remote hosts and pools of hosts, for real: a second libvirtd on this
//! machine that cannot see our files (tests/support/isolated-libvirtd.sh:
//! its own mount and PID namespaces, private /var/cache, /var/lib/libvirt,
//! /run/libvirt and /tmp, the source tree hidden, no /dev/kvm), reached
//! over `qemu+tcp://127.0.0.1:<free port>/system`. Any path of this machine
//! that leaked into a domain's XML makes that domain fail to start there.
//!
//! The e2e test starts the daemon itself and stops it on every path (a
//! guard), then checks that nothing is left: no domain on either daemon,
//! no process or mount of the fixture, its state (the pool's volumes with
//! it) removed. Outside CI, missing root, a tool, libvirtd or a guest
//! kernel, it says SKIPPED and why; with CI=true it fails instead.
//!
//! The other tests here need no daemon: bad `--connect`, `--pool` and
//! `--jobs-per-host` arguments exit 2 before anything starts.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nestlab::host::adapter::LibvirtHost;
use nestlab::host::{ArtifactStore, Host, Transfer};

const MAIN: &str = "qemu:///system";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn nestlab_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nestlab"));
    c.args(args)
        .env_remove("NESTLAB_CONNECT")
        .env_remove("NESTLAB_POOL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn nestlab(args: &[&str]) -> Output {
    nestlab_cmd(args).output().unwrap()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn virsh(uri: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["30", "virsh", "-q", "-c", uri])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Domains named nestlab-* on a daemon.
fn nestlab_domains(uri: &str) -> Vec<String> {
    lines(&virsh(uri, &["list", "--all", "--name"]))
        .into_iter()
        .filter(|l| l.starts_with("nestlab-"))
        .collect()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Console lock files (`/run/lock/LCK..*`) whose holder is not a live
/// process: what a daemon killed with a console open leaves behind (the
/// isolated daemon keeps its own /run/lock).
fn stale_locks() -> Vec<String> {
    std::fs::read_dir("/run/lock")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("LCK.."))
                .filter(|e| {
                    let pid = std::fs::read_to_string(e.path()).unwrap_or_default();
                    !Path::new(&format!("/proc/{}", pid.trim())).exists()
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ------------------------------------------------------------ bad input

/// Runs nestlab with a bad argument: exit 2, an `error: ` naming the
/// problem, nothing on stdout, quickly (nothing was started).
fn refused(args: &[&str], env: &[(&str, &str)], says: &str) {
    // A temporary directory of its own: it must stay empty (no run dir).
    let tmp = tempfile::tempdir().unwrap();
    let mut c = nestlab_cmd(args);
    c.env("TMPDIR", tmp.path());
    for (k, v) in env {
        c.env(k, v);
    }
    let t = Instant::now();
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{args:?}: {}", show(&o));
    let err = stderr(&o);
    assert!(
        err.contains("error: ") && err.contains(says),
        "{args:?}: {err}"
    );
    assert!(o.stdout.is_empty(), "{args:?}: {}", show(&o));
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "{args:?} took {:?}",
        t.elapsed()
    );
    let made: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert!(made.is_empty(), "{args:?} wrote {made:?}");
}

#[test]
fn bad_hosts_and_pools_are_refused_before_anything_starts() {
    refused(
        &["run", "minimal", "--connect", "host.example"],
        &[],
        "not a libvirt URI",
    );
    refused(
        &["run", "minimal", "-c", "qemu+carrier-pigeon://h/system"],
        &[],
        "unknown transport",
    );
    refused(
        &["run", "minimal", "-c", "qemu+ssh:///system"],
        &[],
        "names no host",
    );
    refused(
        &[
            "run",
            "minimal",
            "-c",
            "qemu:///system",
            "-c",
            "qemu:///system",
        ],
        &[],
        "'qemu:///system' is given twice",
    );
    refused(
        &["run", "minimal"],
        &[(
            "NESTLAB_CONNECT",
            "qemu:///system, qemu+tcp://h:99999/system",
        )],
        "$NESTLAB_CONNECT: 'qemu+tcp://h:99999/system': port '99999'",
    );
    refused(
        &["run", "minimal"],
        &[("NESTLAB_CONNECT", "qemu:///system qemu:///system")],
        "$NESTLAB_CONNECT: 'qemu:///system' is given twice",
    );
    refused(
        &["run", "minimal", "--pool", "../etc"],
        &[],
        "not a usable pool name",
    );
    refused(
        &["run", "minimal"],
        &[("NESTLAB_POOL", "a/b")],
        "not a usable pool name",
    );
    refused(
        &["run", "minimal", "--jobs-per-host", "0"],
        &[],
        "--jobs-per-host",
    );
    refused(
        &[
            "up",
            "minimal",
            "-c",
            "qemu:///system",
            "-c",
            "qemu+tcp://127.0.0.1:1/system",
        ],
        &[],
        "`up` starts one virtual host, on one host; 2 were given",
    );
    refused(
        &["appliance", "--connect", "qemu:///system"],
        &[],
        "--prune",
    );
    refused(&["doctor", "-c", "qemu:/system"], &[], "not a libvirt URI");
    refused(
        &[
            "down",
            "--all",
            "-c",
            "qemu+tcp://h/system",
            "-c",
            "qemu+tcp://h/system",
        ],
        &[],
        "given twice",
    );
    // A bad profile among good hosts: still exit 2, before connecting.
    refused(
        &[
            "run",
            "minimal",
            "/nonexistent/p.toml",
            "-c",
            "qemu+tcp://127.0.0.1:1/system",
        ],
        &[],
        "/nonexistent/p.toml",
    );
}

#[test]
fn an_unreachable_pool_host_is_named_and_exits_3() {
    // Port 1 on loopback: connection refused at once. No daemon needed:
    // the run fails before any domain could exist.
    let o = nestlab(&[
        "run",
        "minimal",
        "--accel",
        "tcg",
        "-c",
        "qemu+tcp://127.0.0.1:1/system",
        "-c",
        "qemu+tcp://127.0.0.1:2/system",
        "--json",
    ]);
    let err = stderr(&o);
    // Without a guest kernel the appliance cannot be built: exit 3 too,
    // for another reason; only the message is checked with one.
    if err.contains("no guest kernel") {
        assert!(!in_ci(), "CI=true but there is no guest kernel: {err}");
        assert_eq!(o.status.code(), Some(3), "{}", show(&o));
        eprintln!("SKIPPED (in part): no guest kernel, the pool's messages are not checked");
        return;
    }
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    for p in ["1", "2"] {
        assert!(
            err.contains(&format!(
                "nestlab: qemu+tcp://127.0.0.1:{p}/system: unreachable, left out of the pool: cannot connect to qemu+tcp://127.0.0.1:{p}/system"
            )),
            "{err}"
        );
    }
    let reports: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = reports[0]["error"].as_str().unwrap();
    assert!(
        e.starts_with("no host left to run it: qemu+tcp://127.0.0.1:1/system: cannot connect"),
        "{e}"
    );
}

// ---------------------------------------------------- the isolated daemon

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/isolated-libvirtd.sh")
}

/// The isolated libvirtd: started by [`Isolated::start`], stopped by
/// [`Isolated::stop`] or, on any other path (a failed assertion), when
/// dropped.
struct Isolated {
    state: PathBuf,
    uri: String,
    stopped: bool,
}

impl Isolated {
    fn command(state: &Path, what: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg(script())
            .arg(what)
            .env("NL_ISO_STATE", state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Starts it on a free port with a state dir of its own; what it
    /// hides includes the source tree and the build directory.
    fn start() -> Isolated {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let state = PathBuf::from(format!("/run/nestlab-remote-test-{}", std::process::id()));
        let target = Path::new(env!("CARGO_BIN_EXE_nestlab"))
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .to_path_buf();
        let masks = format!("{} {}", env!("CARGO_MANIFEST_DIR"), target.display());
        let o = Isolated::command(&state, "start")
            .env("NL_ISO_PORT", port.to_string())
            .env("NL_ISO_MASKS", masks)
            .output()
            .unwrap();
        let mut me = Isolated {
            state,
            uri: String::from_utf8_lossy(&o.stdout).trim().to_string(),
            stopped: false,
        };
        assert!(
            o.status.success(),
            "the isolated libvirtd did not start: {}",
            show(&o)
        );
        assert_eq!(me.uri, format!("qemu+tcp://127.0.0.1:{port}/system"));
        me.stopped = false;
        me
    }

    fn run(&self, what: &str) -> Output {
        Isolated::command(&self.state, what).output().unwrap()
    }

    /// Host PIDs of everything it runs, `(role, pid)`.
    fn pids(&self) -> Vec<(String, u32)> {
        String::from_utf8_lossy(&self.run("pids").stdout)
            .lines()
            .filter_map(|l| {
                let (r, p) = l.split_once(' ')?;
                Some((r.to_string(), p.trim().parse().ok()?))
            })
            .collect()
    }

    /// Stops it and checks that nothing of it is left: no process, no
    /// mount, no state dir.
    fn stop(&mut self) -> Result<f64, String> {
        let pids = self.pids();
        let t = Instant::now();
        let o = self.run("stop");
        self.stopped = true;
        let secs = t.elapsed().as_secs_f64();
        if !o.status.success() {
            return Err(format!("stop failed: {}", show(&o)));
        }
        let alive: Vec<_> = pids
            .iter()
            .filter(|(_, p)| Path::new(&format!("/proc/{p}")).exists())
            .collect();
        if !alive.is_empty() {
            return Err(format!("processes left: {alive:?}"));
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let state = self.state.display().to_string();
        if let Some(m) = mounts
            .lines()
            .find(|l| l.contains(&state) || l.contains("nestlab-isolated"))
        {
            return Err(format!("a mount is left: {m}"));
        }
        if self.state.exists() {
            return Err(format!("{} is left", self.state.display()));
        }
        Ok(secs)
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        if !self.stopped {
            if let Err(e) = self.stop() {
                eprintln!("isolated libvirtd: {e}");
            }
        }
    }
}

/// Why the e2e test cannot run here, if it cannot.
fn missing() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        return Some("the isolated libvirtd needs root".into());
    }
    for tool in [
        "unshare", "nsenter", "tini", "libvirtd", "virtlogd", "virsh", "timeout",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} is not installed (./dev setup installs it)"));
        }
    }
    if !Path::new("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_storage.so")
        .exists()
    {
        return Some(
            "libvirt-daemon-driver-storage is not installed (./dev setup installs it)".into(),
        );
    }
    if !virsh(MAIN, &["version"]).status.success() {
        return Some(format!(
            "no libvirtd answers at {MAIN} (./dev setup starts it)"
        ));
    }
    let doctor = nestlab(&["doctor"]);
    if !String::from_utf8_lossy(&doctor.stdout).contains("ok   guest kernel") {
        return Some("no guest kernel (./dev setup fetches one)".into());
    }
    None
}

/// The `<kernel>` and `<initrd>` of a kept domain.xml.
fn boot_paths(xml: &str) -> Vec<String> {
    ["kernel", "initrd"]
        .iter()
        .filter_map(|t| {
            let open = format!("<{t}>");
            let rest = xml.split(&open).nth(1)?;
            Some(rest.split('<').next()?.to_string())
        })
        .collect()
}

/// The domain names in the kept run directories under `dir`.
fn made_domains(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for d in rd.flatten() {
        if let Ok(xml) = std::fs::read_to_string(d.path().join("domain.xml")) {
            if let Some(n) = xml.split("<name>").nth(1).and_then(|r| r.split('<').next()) {
                out.push(n.to_string());
            }
        }
    }
    out
}

fn json(o: &Output) -> Vec<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", show(o)))
        .as_array()
        .unwrap()
        .clone()
}

fn line_with<'a>(text: &'a str, what: &str) -> &'a str {
    text.lines().find(|l| l.contains(what)).unwrap_or("")
}

/// Whether a report failed only because the nested guest did not finish
/// in time (its checks, all `nested.*`).
fn nested_timed_out_only(rep: &serde_json::Value) -> bool {
    let failed: Vec<&serde_json::Value> = rep["checks"]
        .as_array()
        .map(|c| c.iter().filter(|c| c["status"] == "fail").collect())
        .unwrap_or_default();
    !failed.is_empty()
        && failed
            .iter()
            .all(|c| c["id"].as_str().is_some_and(|i| i.starts_with("nested.")))
        && failed.iter().any(|c| {
            c["observed"]
                .as_str()
                .is_some_and(|o| o.contains("did not finish within"))
        })
}

/// Waits for a spawned nestlab, keeping its output.
fn finish(mut child: Child) -> Output {
    let mut out = Vec::new();
    let mut err = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_end(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut err);
    }
    let status = child.wait().unwrap();
    Output {
        status,
        stdout: out,
        stderr: err,
    }
}

/// Two connections (two nestlab processes, as libvirt sees them) stage
/// the same new file at once: one uploads, the other waits for it, the
/// volume is the file; a half-finished upload (no completion marker) is
/// taken over once it stalled; a complete volume of the wrong size is
/// uploaded again.
fn concurrent_staging(uri: &str, work: &Path) {
    let file = work.join("blob.img");
    let data: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let art = nestlab::guest::file_artifact(&file);
    let store = ArtifactStore::Pool("nestlab".into());
    let hosts: Vec<Arc<LibvirtHost>> = (0..2)
        .map(|_| Arc::new(LibvirtHost::connect_with(uri, store.clone()).unwrap()))
        .collect();
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let threads: Vec<_> = hosts
        .iter()
        .map(|h| {
            let (h, a, b) = (h.clone(), art.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                h.stage(&a, &|_, _| {}).unwrap()
            })
        })
        .collect();
    let staged: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let uploads = staged
        .iter()
        .filter(|s| matches!(s.transfer, Transfer::Uploaded { .. }))
        .count();
    assert_eq!(uploads, 1, "{staged:?}");
    assert_eq!(staged[0].path, staged[1].path);
    let vol = nestlab::host::volume_name(&art.name);
    let back = work.join("back.img");
    let o = virsh(
        uri,
        &[
            "vol-download",
            "--pool",
            "nestlab",
            &vol,
            back.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        std::fs::read(&back).unwrap() == data,
        "the volume is not the file"
    );
    eprintln!("remote: two concurrent stagings of 24 MiB: {staged:?}");

    // An abandoned upload: the volume without its marker, never growing.
    let file2 = work.join("blob2.img");
    std::fs::write(&file2, &data[..1 << 20]).unwrap();
    let art2 = nestlab::guest::file_artifact(&file2);
    let vol2 = nestlab::host::volume_name(&art2.name);
    let o = virsh(
        uri,
        &[
            "vol-create-as",
            "nestlab",
            &vol2,
            "1048576",
            "--format",
            "raw",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    let fresh = LibvirtHost::connect_with(uri, store.clone()).unwrap();
    let t = Instant::now();
    let s = fresh.stage(&art2, &|_, _| {}).unwrap();
    assert!(matches!(s.transfer, Transfer::Uploaded { .. }), "{s:?}");
    let waited = t.elapsed().as_secs_f64();
    assert!(waited >= 19.0, "took over after {waited:.1} s");
    eprintln!("remote: an abandoned upload was taken over after {waited:.1} s");

    // A complete volume of another size under the name: uploaded again.
    let o = virsh(uri, &["vol-delete", "--pool", "nestlab", &vol2]);
    assert!(o.status.success(), "{}", show(&o));
    let o = virsh(
        uri,
        &["vol-create-as", "nestlab", &vol2, "4096", "--format", "raw"],
    );
    assert!(o.status.success(), "{}", show(&o));
    let fresh = LibvirtHost::connect_with(uri, store).unwrap();
    let s = fresh.stage(&art2, &|_, _| {}).unwrap();
    assert!(
        matches!(s.transfer, Transfer::Uploaded { bytes: 1048576, .. }),
        "{s:?}"
    );
    for v in [vol, vol2] {
        for n in [v.clone(), format!("{v}.complete")] {
            let o = virsh(uri, &["vol-delete", "--pool", "nestlab", &n]);
            assert!(o.status.success(), "{n}: {}", show(&o));
        }
    }
}

#[test]
fn e2e_remote_hosts_and_a_pool_of_two_daemons() {
    if let Some(why) = missing() {
        assert!(!in_ci(), "CI=true but {why}");
        eprintln!("SKIPPED: remote e2e: {why}");
        return;
    }
    let t_all = Instant::now();
    let before_locks = stale_locks();
    let main_before = nestlab_domains(MAIN);
    let out = tempfile::tempdir().unwrap();
    let o = |p: &str| out.path().join(p).display().to_string();

    let t = Instant::now();
    let mut iso = Isolated::start();
    let uri = iso.uri.clone();
    eprintln!(
        "remote: isolated libvirtd at {uri} up in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // 1. doctor asks that host: TCG (no /dev/kvm there), no TSC, no pool yet.
    let d = nestlab(&["doctor", "--connect", &uri]);
    let text = String::from_utf8_lossy(&d.stdout).into_owned();
    assert_eq!(d.status.code(), Some(0), "{}", show(&d));
    let reachable = format!("reachable at {uri}, QEMU 1");
    for want in [
        reachable.as_str(),
        "accelerator: tcg (libvirt offers no KVM domains there",
        "no TSC frequency in its capabilities",
        "storage pool nestlab: not there yet; the first run creates it",
    ] {
        assert!(text.contains(want), "doctor lacks {want:?}:\n{text}");
    }

    // 2. minimal through it: the pool is created, both files uploaded, the
    // domain boots from the volumes (a leaked local path would not start).
    let t = Instant::now();
    let r = nestlab(&[
        "run",
        "minimal",
        "--connect",
        &uri,
        "--json",
        "--out",
        &o("m1"),
    ]);
    let err = stderr(&r);
    assert_eq!(r.status.code(), Some(0), "{}", show(&r));
    let cold = t.elapsed().as_secs_f64();
    let up = line_with(&err, "minimal: uploaded ").to_string();
    assert!(
        up.contains("vmlinux (") && up.contains("initrd.img ("),
        "{err}"
    );
    assert!(up.ends_with(&format!("to pool nestlab on {uri}")), "{up}");
    let rep = &json(&r)[0];
    assert_eq!(rep["host"], uri.as_str());
    assert!(
        rep["timings"]["uploaded"].as_u64().unwrap() > 1 << 20,
        "{rep}"
    );
    let xml = std::fs::read_to_string(out.path().join("m1/minimal/domain.xml")).unwrap();
    for p in boot_paths(&xml) {
        assert!(
            p.starts_with("/var/lib/libvirt/images/nestlab/nestlab-"),
            "{p}"
        );
    }
    eprintln!("remote: cold run {cold:.1} s: {up}");

    // 3. Again: nothing uploaded.
    let t = Instant::now();
    let r = nestlab(&[
        "run",
        "minimal",
        "--connect",
        &uri,
        "--json",
        "--out",
        &o("m2"),
    ]);
    let err = stderr(&r);
    assert_eq!(r.status.code(), Some(0), "{}", show(&r));
    let warm = line_with(&err, "boot files already in").to_string();
    assert!(warm.contains("nothing uploaded"), "{err}");
    assert!(json(&r)[0]["timings"].get("uploaded").is_none());
    eprintln!(
        "remote: warm run {:.1} s: {warm}",
        t.elapsed().as_secs_f64()
    );

    // 4. Staging races and broken uploads, through the library.
    let work = tempfile::tempdir().unwrap();
    concurrent_staging(&uri, work.path());

    // 5. reference (with its nested guest: the nested initramfs uploaded too).
    let t = Instant::now();
    let r = nestlab(&[
        "run",
        "reference",
        "--connect",
        &uri,
        "--json",
        "--out",
        &o("ref"),
    ]);
    let err = stderr(&r);
    assert!(
        err.contains("reference: uploaded initrd.img") && err.contains("already there: vmlinux"),
        "{}",
        show(&r)
    );
    if r.status.code() == Some(1) && !in_ci() && nested_timed_out_only(&json(&r)[0]) {
        // Outside CI, on a machine shared with other TCG guests, the nested
        // guest (KVM inside a TCG guest) can outlast the agent's 45 s
        // twice; everything this test is about passed. CI holds it to a pass.
        eprintln!("remote: reference: only the nested guest timed out (a loaded machine); the upload and the topology passed");
    } else {
        assert_eq!(r.status.code(), Some(0), "{}", show(&r));
    }
    eprintln!(
        "remote: reference {:.1} s: {}",
        t.elapsed().as_secs_f64(),
        line_with(&err, "reference: uploaded")
    );

    // 6. A pool of both daemons: four profiles, two at once, spread. The
    // nested steps are left out: step 5 booted one through the isolated
    // daemon, e2e.rs boots them on the main one, and two nested TCG guests
    // at once on a loaded 2-core machine outlast the agent's nested timeout.
    // This is about placing the runs.
    let t = Instant::now();
    let junit = o("pool.xml");
    let r = nestlab(&[
        "run",
        "reference",
        "two-socket",
        "sriov",
        "minimal",
        "--connect",
        &uri,
        "--connect",
        MAIN,
        "--jobs",
        "2",
        "--skip-nested",
        "--junit",
        &junit,
        "--json",
        "--out",
        &o("pool"),
    ]);
    let err = stderr(&r);
    assert_eq!(r.status.code(), Some(0), "{}", show(&r));
    let reps = json(&r);
    let mut on: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for rep in &reps {
        assert_eq!(rep["verdict"], "pass", "{rep}");
        on.entry(rep["host"].as_str().unwrap().to_string())
            .or_default()
            .push(format!(
                "{} {:.1} s",
                rep["profile"].as_str().unwrap(),
                rep["seconds"].as_f64().unwrap_or(0.0)
            ));
    }
    assert_eq!(on.len(), 2, "both hosts should have run something: {on:?}");
    let j = std::fs::read_to_string(&junit).unwrap();
    for rep in &reps {
        let suite = format!("<testsuite name=\"{}\"", rep["profile"].as_str().unwrap());
        let tag = j.split(&suite).nth(1).unwrap().split('>').next().unwrap();
        assert!(
            tag.contains(&format!("hostname=\"{}\"", rep["host"].as_str().unwrap())),
            "{tag}"
        );
    }
    assert!(
        err.contains(&format!("nestlab: {uri}: accelerator tcg")),
        "{err}"
    );
    eprintln!(
        "remote: pool of 2 daemons, 4 profiles, --jobs 2: {:.1} s; {on:?}",
        t.elapsed().as_secs_f64()
    );

    // 7. The isolated daemon killed mid-run: its profile exit 3, the other
    // passes; the domain is removed through a new connection once the
    // daemon is back.
    let child = nestlab_cmd(&[
        "run",
        "two-socket",
        "minimal",
        "--connect",
        &uri,
        "--connect",
        MAIN,
        "--jobs",
        "2",
        "--json",
        "--out",
        &o("kill"),
    ])
    .spawn()
    .unwrap();
    wait_for("two-socket running on the isolated daemon", 180, || {
        nestlab_domains(&uri)
            .iter()
            .any(|n| n.starts_with("nestlab-two-socket-"))
    });
    let t = Instant::now();
    let k = iso.run("kill-libvirtd");
    assert!(k.status.success(), "{}", show(&k));
    std::thread::sleep(Duration::from_secs(3));
    let rs = iso.run("restart-libvirtd");
    assert!(rs.status.success(), "{}", show(&rs));
    let r = finish(child);
    assert_eq!(r.status.code(), Some(3), "{}", show(&r));
    let reps = json(&r);
    assert_eq!(reps[0]["verdict"], "error", "{}", reps[0]);
    assert_eq!(reps[0]["host"], uri.as_str());
    assert_eq!(reps[1]["verdict"], "pass", "{}", reps[1]);
    assert_eq!(reps[1]["host"], MAIN);
    assert!(
        stderr(&r).contains(&format!("nestlab: {uri}: lost during a run")),
        "{}",
        show(&r)
    );
    wait_for("the killed run's domain to be gone", 60, || {
        nestlab_domains(&uri).is_empty()
    });
    eprintln!(
        "remote: libvirtd killed mid-run: exit 3 for two-socket ({}), minimal passed on {MAIN}; {:.1} s from the kill to the end",
        reps[0]["error"].as_str().unwrap_or("").lines().next().unwrap_or(""),
        t.elapsed().as_secs_f64()
    );

    // 8. Ctrl-C with a run on each host: exit 130, both domains destroyed.
    let child = nestlab_cmd(&[
        "run",
        "minimal",
        "minimal",
        "--connect",
        &uri,
        "--connect",
        MAIN,
        "--jobs",
        "2",
        "--out",
        &o("int"),
    ])
    .spawn()
    .unwrap();
    let int_dir = out.path().join("int");
    wait_for("a minimal running on each daemon", 180, || {
        let made = made_domains(&int_dir);
        let on = |u: &str| nestlab_domains(u).iter().any(|n| made.contains(n));
        made.len() == 2 && on(&uri) && on(MAIN)
    });
    let t = Instant::now();
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let r = finish(child);
    assert_eq!(r.status.code(), Some(130), "{}", show(&r));
    let made = made_domains(&int_dir);
    for u in [uri.as_str(), MAIN] {
        let left: Vec<String> = nestlab_domains(u)
            .into_iter()
            .filter(|n| made.contains(n))
            .collect();
        assert_eq!(left, Vec::<String>::new(), "SIGINT left domains on {u}");
    }
    eprintln!(
        "remote: SIGINT with a run on each daemon: exit 130 after {:.1} s, both destroyed",
        t.elapsed().as_secs_f64()
    );

    // 9. Prune: an old appliance's volumes go, the current ones and a
    // volume nestlab did not make stay.
    let stale = format!("nestlab-{}-vmlinux", "0".repeat(64));
    for (name, size) in [
        (stale.clone(), "4096"),
        (format!("{stale}.complete"), "0"),
        ("user-disk.img".to_string(), "4096"),
    ] {
        let c = virsh(
            &uri,
            &["vol-create-as", "nestlab", &name, size, "--format", "raw"],
        );
        assert!(c.status.success(), "{}", show(&c));
    }
    let p = nestlab(&["appliance", "--prune", "--connect", &uri]);
    assert_eq!(p.status.code(), Some(0), "{}", show(&p));
    let list = virsh(&uri, &["vol-list", "nestlab"]);
    assert!(list.status.success(), "{}", show(&list));
    let vols: Vec<String> = lines(&list)
        .iter()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(!vols.iter().any(|v| v.starts_with(&stale)), "{vols:?}");
    assert!(vols.contains(&"user-disk.img".to_string()), "{vols:?}");
    assert!(
        vols.iter()
            .filter(|v| v.starts_with("nestlab-") && !v.ends_with(".complete"))
            .count()
            >= 3,
        "{vols:?}"
    );
    eprintln!(
        "remote: prune: {}",
        String::from_utf8_lossy(&p.stdout)
            .lines()
            .last()
            .unwrap_or("")
    );

    // Nothing left: no domain on either daemon, then the fixture stopped
    // without a process, a mount or a file of it left.
    assert_eq!(nestlab_domains(&uri), Vec::<String>::new());
    let made: Vec<String> = ["m1", "m2", "ref", "pool", "kill", "int"]
        .iter()
        .flat_map(|d| made_domains(&out.path().join(d)))
        .collect();
    let left: Vec<String> = nestlab_domains(MAIN)
        .into_iter()
        .filter(|n| made.contains(n) && !main_before.contains(n))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "domains left on {MAIN}");
    let secs = iso.stop().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("remote: isolated libvirtd stopped in {secs:.1} s, nothing left");
    // (No check of nestlab-run-* temporary directories: every run here
    // keeps its files with --out, and on a shared machine other people's
    // runs come and go in /tmp meanwhile.)
    let locks: Vec<_> = stale_locks()
        .into_iter()
        .filter(|n| !before_locks.contains(n))
        .collect();
    // On a shared machine another daemon killed meanwhile (a fault test)
    // leaves such files too: only CI, which runs alone, fails on them.
    if in_ci() {
        assert!(
            locks.is_empty(),
            "stale lock files left in /run/lock: {locks:?}"
        );
    } else if !locks.is_empty() {
        eprintln!("remote: warning: stale lock files appeared in /run/lock meanwhile: {locks:?}");
    }
    eprintln!("remote: all in {:.1} s", t_all.elapsed().as_secs_f64());
}
