//! What the benchmarks share: timing a `nestlab run` to its verdict line
//! and its exit, and medians.
#![allow(dead_code)] // each benchmark uses its own subset

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One `nestlab run ARGS`: seconds to the verdict line and to the exit,
/// the exit code, and what it printed on stdout.
pub fn time_run(bin: &str, args: &[&str], cwd: &Path) -> (Option<f64>, f64, Option<i32>, String) {
    let t = Instant::now();
    let mut child = Command::new(bin)
        .arg("run")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nestlab run");
    let out = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut o) = out {
            let _ = std::io::Read::read_to_string(&mut o, &mut s);
        }
        s
    });
    let mut verdict = None;
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if verdict.is_none()
                && [": PASS:", ": FAIL:", ": ERROR:"]
                    .iter()
                    .any(|v| line.contains(v))
            {
                verdict = Some(t.elapsed().as_secs_f64());
            }
        }
    }
    let st = child.wait().expect("nestlab run");
    let stdout = reader.join().unwrap_or_default();
    (verdict, t.elapsed().as_secs_f64(), st.code(), stdout)
}
