//! Guest-kind and workload benchmark: prints figures, asserts none.
//!
//! Side by side in one run, `NESTLAB_BENCH_RUNS` times each (default 1:
//! a Debian boot takes minutes under TCG), medians in seconds from spawn:
//! - `nestlab run P` with the appliance and with `--guest debian`, for each
//!   profile of `NESTLAB_BENCH_GUEST_PROFILES` (default `minimal
//!   reference`): to the verdict line and to the exit, and the ratio
//!   Debian / appliance;
//! - `nestlab run minimal -- true` next to `nestlab run minimal`: what a
//!   workload step costs (the share, the gate, the command);
//! - the share's read throughput: a file of `NESTLAB_BENCH_SHARE_MIB`
//!   (default 256) MiB read with coreutils `dd` (the host's /usr, shared
//!   into the appliance) in the guest from a read-only
//!   `--share` (virtio-9p), as dd reports it;
//! - `nestlab image` on a built image (what every Debian run pays first),
//!   and the figures the image recorded when it was built (mmdebstrap,
//!   mkfs, size); with `NESTLAB_BENCH_IMAGE_COLD=1` also a build from an
//!   empty cache (a throwaway `NESTLAB_CACHE_DIR`, same guest kernel).
//!
//! Run with `cargo bench --bench guests` (or `./dev bench guests`), as root
//! with libvirtd up and the Debian image buildable (mmdebstrap).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

mod support;
use support::{median, time_run};

/// The guest kernel `nestlab doctor` reports (`ok   guest kernel V (PATH)`).
fn kernel_path(bin: &str) -> String {
    let out = Command::new(bin)
        .arg("doctor")
        .output()
        .expect("nestlab doctor");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("ok   guest kernel ")?;
            let (_, path) = rest.split_once(" (")?;
            Some(path.split(')').next()?.to_string())
        })
        .expect("nestlab doctor names no guest kernel")
}
struct Row {
    case: String,
    verdict: f64,
    exit: f64,
}

fn measure(bin: &str, case: &str, args: &[&str], runs: usize, cwd: &Path) -> Row {
    let (mut verdicts, mut exits) = (Vec::new(), Vec::new());
    for r in 0..runs {
        let (verdict, exit, code, _) = time_run(bin, args, cwd);
        if code != Some(0) {
            println!("  {case} run {r}: nestlab exited {code:?}; not counted");
            continue;
        }
        println!(
            "  {case} run {r}: verdict {} s, exit {exit:.1} s",
            verdict.map(|v| format!("{v:.1}")).unwrap_or("-".into())
        );
        verdicts.extend(verdict);
        exits.push(exit);
    }
    Row {
        case: case.to_string(),
        verdict: median(&mut verdicts),
        exit: median(&mut exits),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_nestlab");
    let runs: usize = std::env::var("NESTLAB_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let profiles: Vec<String> = std::env::var("NESTLAB_BENCH_GUEST_PROFILES")
        .unwrap_or_else(|_| "minimal reference".into())
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let share_mib: u64 = std::env::var("NESTLAB_BENCH_SHARE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let work = tempfile::tempdir().unwrap();
    let cwd = work.path();
    println!("guests benchmark: TCG, {runs} run(s) each, medians in seconds from spawn");

    // Cold: with NESTLAB_BENCH_IMAGE_COLD=1, the image built from nothing
    // into a throwaway cache (the same guest kernel), then removed.
    if std::env::var("NESTLAB_BENCH_IMAGE_COLD").is_ok_and(|v| v == "1") {
        let kernel = kernel_path(bin);
        let cold = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let out = Command::new(bin)
            .args(["image", "--kernel", &kernel])
            .env("NESTLAB_CACHE_DIR", cold.path())
            .stderr(Stdio::inherit())
            .output()
            .expect("nestlab image");
        let secs = t.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&out.stdout);
        let size = text
            .lines()
            .find_map(|l| l.strip_prefix("size"))
            .unwrap_or("-")
            .trim()
            .to_string();
        println!(
            "  image, cold (empty cache, exit {:?}): {secs:.1} s, {size}",
            out.status.code()
        );
    }
    // The image first: built if missing (not counted), then timed cached.
    let t = Instant::now();
    let img = Command::new(bin)
        .arg("image")
        .output()
        .expect("nestlab image");
    let first = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&img.stdout).into_owned();
    let t = Instant::now();
    let _ = Command::new(bin).arg("image").output();
    let cached = t.elapsed().as_secs_f64();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "  image: first call {first:.1} s, cached {cached:.2} s; built with mmdebstrap in {} s, mkfs in {} s, {} packages; {}",
        get("build   mmdebstrap-seconds"),
        get("build   image-seconds"),
        get("build   packages"),
        get("size")
    );

    let mut rows = Vec::new();
    let mut pairs = Vec::new();
    for p in &profiles {
        let a = measure(
            bin,
            &format!("{p} (appliance)"),
            &[p, "--accel", "tcg"],
            runs,
            cwd,
        );
        let d = measure(
            bin,
            &format!("{p} (debian)"),
            &[p, "--accel", "tcg", "--guest", "debian"],
            runs,
            cwd,
        );
        pairs.push((p.clone(), a.verdict, d.verdict));
        rows.push(a);
        rows.push(d);
    }
    let plain = measure(bin, "minimal", &["minimal", "--accel", "tcg"], runs, cwd);
    let with_true = measure(
        bin,
        "minimal -- true",
        &["minimal", "--accel", "tcg", "--", "true"],
        runs,
        cwd,
    );
    let workload_cost = with_true.exit - plain.exit;
    rows.push(plain);
    rows.push(with_true);

    // The share's read throughput.
    let data = cwd.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let status = Command::new("dd")
        .args([
            "if=/dev/urandom",
            &format!("of={}", data.join("big").display()),
            "bs=1M",
            &format!("count={share_mib}"),
        ])
        .stderr(Stdio::null())
        .status()
        .expect("dd");
    assert!(status.success());
    let share = format!("{}:/data:ro", data.display());
    let mut speeds = Vec::new();
    for r in 0..runs {
        let (_, _, code, out) = time_run(
            bin,
            &[
                "minimal",
                "--accel",
                "tcg",
                "--share",
                &share,
                "--",
                "sh",
                "-c",
                "/usr/bin/dd if=/data/big of=/dev/null bs=1M 2>&1 | tail -n 1",
            ],
            cwd,
        );
        println!("  share read run {r} (exit {code:?}): {}", out.trim());
        speeds.push(out.trim().to_string());
    }

    println!();
    println!("| case | to verdict | to exit |");
    println!("|---|---|---|");
    for r in &rows {
        println!("| {} | {:.1} s | {:.1} s |", r.case, r.verdict, r.exit);
    }
    println!();
    println!("| profile | appliance to verdict | debian to verdict | ratio debian / appliance |");
    println!("|---|---|---|---|");
    for (p, a, d) in pairs {
        println!("| {p} | {a:.1} s | {d:.1} s | {:.2} |", d / a);
    }
    println!();
    println!(
        "a workload step (`-- true`) adds {workload_cost:.1} s to `nestlab run minimal`; \
         the share ({share_mib} MiB, virtio-9p, read-only) read at: {}",
        speeds.join(" / ")
    );
}
