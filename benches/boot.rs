//! Boot benchmark: prints figures, asserts none.
//!
//! For each case (default `minimal reference:skip-nested reference`, or
//! `NESTLAB_BENCH_PROFILES`; `NAME:skip-nested` runs with `--skip-nested`),
//! `NESTLAB_BENCH_RUNS` times (default 3):
//! - `nestlab run PROFILE --accel tcg --out DIR`: wall time from spawn to
//!   its verdict line on stderr (`<profile>: PASS: ...`, printed while
//!   libvirt still tears the domain down), and to its exit;
//! - plain qemu-system running the very same command line libvirt built for
//!   that run (`virsh domxml-to-native qemu-argv DIR/domain.xml`, made
//!   runnable outside libvirt: no `-S`, no monitor socket or secret object,
//!   user-mode networking instead of the tap fds domxml-to-native prints,
//!   the serial port on stdout, `romfile=""` as libvirt really passes), from
//!   spawn to the same end marker.
//!
//! Prints the medians and the ratios nestlab / plain (to the verdict and to
//! the exit). Run with `cargo bench --bench boot` (or `./dev bench`), as
//! root with libvirtd up.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{median, time_run};

/// The domxml-to-native argv, made runnable without libvirt.
fn plain_argv(domain_xml: &Path) -> Vec<String> {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system", "domxml-to-native", "qemu-argv"])
        .arg(domain_xml)
        .output()
        .expect("virsh");
    assert!(
        out.status.success(),
        "domxml-to-native: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // virsh prints the argv with POSIX shell quoting and line continuations.
    let text = String::from_utf8_lossy(&out.stdout).replace("\\\n", " ");
    let words = shell_words::split(&text).expect("domxml-to-native printed unbalanced quotes");
    let start = words
        .iter()
        .position(|w| w.contains("qemu-system"))
        .expect("no qemu-system in argv");
    let mut argv = Vec::new();
    let mut i = start;
    while i < words.len() {
        let w = &words[i];
        let next = words.get(i + 1).cloned().unwrap_or_default();
        match w.as_str() {
            "-S" => {}
            "-mon" => i += 1,
            "-chardev" if next.starts_with("socket,id=charmonitor") => i += 1,
            "-chardev" if next.starts_with("pty,") => {
                argv.push(w.clone());
                argv.push(next.replacen("pty,", "stdio,", 1));
                i += 1;
            }
            "-object" if next.contains("\"secret\"") => i += 1,
            "-netdev" if next.contains("\"tap\"") => {
                let id = next
                    .split("\"id\":\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("hostnet0")
                    .to_string();
                argv.push(w.clone());
                argv.push(format!("user,id={id}"));
                i += 1;
            }
            "-device" if next.contains("\"netdev\"") && !next.contains("romfile") => {
                argv.push(w.clone());
                argv.push(next.replacen('{', "{\"romfile\":\"\",", 1));
                i += 1;
            }
            _ => argv.push(w.clone()),
        }
        i += 1;
    }
    argv
}

fn done_marker(domain_xml: &Path) -> String {
    let xml = std::fs::read_to_string(domain_xml).unwrap();
    let nonce = xml
        .split("nestlab.nonce=")
        .nth(1)
        .and_then(|r| r.split([' ', '<']).next())
        .expect("no nonce")
        .to_string();
    format!("::nestlab:{nonce}:done")
}

fn time_plain(argv: &[String], marker: &str) -> Option<Duration> {
    let start = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let mut found = None;
    for line in BufReader::new(stdout).split(b'\n') {
        let Ok(line) = line else { break };
        if String::from_utf8_lossy(&line).contains(marker) {
            found = Some(start.elapsed());
            break;
        }
        if start.elapsed() > Duration::from_secs(300) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    found
}
fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let cases: Vec<String> = std::env::var("NESTLAB_BENCH_PROFILES")
        .unwrap_or_else(|_| "minimal reference:skip-nested reference".into())
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let runs: usize = std::env::var("NESTLAB_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let bin = env!("CARGO_BIN_EXE_nestlab");
    println!(
        "boot benchmark: TCG, {runs} runs each; medians in seconds from spawn to nestlab's \
         verdict / exit, and plain qemu-system (same argv) to the end marker"
    );
    let mut rows = Vec::new();
    for case in &cases {
        let (profile, skip) = match case.strip_suffix(":skip-nested") {
            Some(p) => (p, true),
            None => (case.as_str(), false),
        };
        let mut args = vec![profile];
        if skip {
            args.push("--skip-nested");
        }
        let (mut verdicts, mut exits, mut plain) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..runs {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().display().to_string();
            let mut run_args = vec!["--accel", "tcg", "--out", &out];
            run_args.extend(&args);
            let (verdict, exit, code, _) = time_run(bin, &run_args, Path::new("."));
            if code != Some(0) {
                println!("  {case} run {r}: nestlab exited {code:?}; not counted");
                continue;
            }
            verdicts.extend(verdict);
            exits.push(exit);
            // The run's directory is named after the profile.
            let xml = std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .map(|e| e.path().join("domain.xml"))
                .find(|p| p.exists())
                .expect("no domain.xml in the run directory");
            let argv = plain_argv(&xml);
            match time_plain(&argv, &done_marker(&xml)) {
                Some(d) => plain.push(d.as_secs_f64()),
                None => println!("  {case} run {r}: plain qemu never printed the end marker"),
            }
            println!(
                "  {case} run {r}: nestlab verdict {} s, exit {exit:.2} s; plain qemu {}",
                verdict.map(|v| format!("{v:.2}")).unwrap_or("-".into()),
                plain
                    .last()
                    .map(|s| format!("{s:.2} s"))
                    .unwrap_or("-".into())
            );
        }
        rows.push((
            case.clone(),
            median(&mut verdicts),
            median(&mut exits),
            median(&mut plain),
        ));
    }
    println!();
    println!("| case | nestlab to verdict | nestlab to exit | plain qemu to end marker | ratio (verdict) | ratio (exit) |");
    println!("|---|---|---|---|---|---|");
    for (c, v, e, p) in rows {
        println!(
            "| {c} | {v:.2} s | {e:.2} s | {p:.2} s | {:.3} | {:.3} |",
            v / p,
            e / p
        );
    }
}
