//! Boot benchmark: prints figures, asserts none.
//!
//! For each profile (default `minimal reference`, or `NESTLAB_BENCH_PROFILES`),
//! `NESTLAB_BENCH_RUNS` times (default 3):
//! - `nestlab run PROFILE --accel tcg --out DIR`: wall time from start to verdict;
//! - plain qemu-system running the very same command line libvirt built for
//!   that run (`virsh domxml-to-native qemu-argv DIR/domain.xml`, made
//!   runnable outside libvirt: no `-S`, no monitor socket or secret object,
//!   user-mode networking instead of the tap fds domxml-to-native prints,
//!   the serial port on stdout, `romfile=""` as libvirt really passes), from
//!   spawn to the same end marker.
//!
//! Prints the medians and the ratio nestlab / plain. Run with
//! `cargo bench --bench boot` (or `./dev bench`), as root with libvirtd up.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn split_shell(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '\\' => {
                if let Some(d) = chars.next() {
                    if d != '\n' {
                        cur.push(d);
                        in_word = true;
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

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
    let words = split_shell(&String::from_utf8_lossy(&out.stdout));
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

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let profiles: Vec<String> = std::env::var("NESTLAB_BENCH_PROFILES")
        .unwrap_or_else(|_| "minimal reference".into())
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let runs: usize = std::env::var("NESTLAB_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let bin = env!("CARGO_BIN_EXE_nestlab");
    println!(
        "boot benchmark: TCG, {runs} runs each, median seconds to verdict / to the end marker"
    );
    let mut rows = Vec::new();
    for p in &profiles {
        let mut ours = Vec::new();
        let mut plain = Vec::new();
        for r in 0..runs {
            let dir = tempfile::tempdir().unwrap();
            let t = Instant::now();
            let st = Command::new(bin)
                .args(["run", p, "--accel", "tcg", "--out"])
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("nestlab run");
            let secs = t.elapsed().as_secs_f64();
            if st.code() != Some(0) {
                println!("  {p} run {r}: nestlab exited {:?}; skipped", st.code());
                continue;
            }
            ours.push(secs);
            let xml = dir.path().join(p).join("domain.xml");
            let argv = plain_argv(&xml);
            match time_plain(&argv, &done_marker(&xml)) {
                Some(d) => plain.push(d.as_secs_f64()),
                None => println!("  {p} run {r}: plain qemu never printed the end marker"),
            }
            println!(
                "  {p} run {r}: nestlab {secs:.2} s, plain qemu {}",
                plain
                    .last()
                    .map(|s| format!("{s:.2} s"))
                    .unwrap_or("-".into())
            );
        }
        let (m1, m2) = (median(&mut ours), median(&mut plain));
        rows.push((p.clone(), m1, m2));
    }
    println!();
    println!("| profile | nestlab run to verdict | plain qemu to end marker | ratio |");
    println!("|---|---|---|---|");
    for (p, a, b) in rows {
        println!("| {p} | {a:.2} s | {b:.2} s | {:.3} |", a / b);
    }
}
