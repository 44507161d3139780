//! Report stage: checks -> a verdict, printed for people (a table), for
//! machines (JSON) and for CI dashboards (JUnit XML). `nestlab check` and
//! `nestlab run` print the same [`Report`].

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Saw what was expected.
    Pass,
    /// Saw something else.
    Fail,
    /// Its input was not captured.
    Skip,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Stable id, e.g. `numa.node2.cpus`, `pci.dev.b5:00.0.present`.
    pub id: String,
    /// How it ended.
    pub status: Status,
    /// What the profile asks for, in words.
    pub expected: String,
    /// What the guest showed, in words.
    pub observed: String,
    /// One sentence a user understands.
    pub message: String,
}

impl Check {
    /// A check that passes when `ok`.
    pub fn judge(
        id: impl Into<String>,
        ok: bool,
        expected: impl Into<String>,
        observed: impl Into<String>,
        message: impl Into<String>,
    ) -> Check {
        Check {
            id: id.into(),
            status: if ok { Status::Pass } else { Status::Fail },
            expected: expected.into(),
            observed: observed.into(),
            message: message.into(),
        }
    }
    /// A check whose input was not captured.
    pub fn skip(
        id: impl Into<String>,
        expected: impl Into<String>,
        why: impl Into<String>,
    ) -> Check {
        Check {
            id: id.into(),
            status: Status::Skip,
            expected: expected.into(),
            observed: String::new(),
            message: why.into(),
        }
    }
}

/// The overall outcome for one profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// At least one check ran and none failed.
    Pass,
    /// A check failed (or none ran).
    Fail,
    /// The run could not reach a verdict (boot failed, timeout, libvirt).
    Error,
    /// The host cannot run this profile (a missing QEMU device, say).
    Skipped,
}

/// The report for one profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Profile name.
    pub profile: String,
    /// Outcome.
    pub verdict: Verdict,
    /// Every check, in a stable order.
    pub checks: Vec<Check>,
    /// Why there is no verdict from checks (errors and skips), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The libvirt URI of the host that ran it (none when no host did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Seconds from start to verdict, when run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Where a run's time went, when it booted a guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// Steps of the in-guest agent that failed (a module that did not
    /// load, VFs that could not be made); the agent went on after each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guest_errors: Vec<GuestStepError>,
    /// Where the workloads' artifacts were kept (`$NESTLAB_ARTIFACTS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<String>,
    /// Test cases from JUnit files the workloads wrote into the artifacts
    /// folder (merged into `--junit` under the profile's suite).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_junit: Vec<UserCase>,
}

/// A test case of the user's, read from a JUnit file of the artifacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCase {
    /// The file it came from (relative to the artifacts folder).
    pub file: String,
    /// Its `classname` (its suite's name when it has none).
    pub classname: String,
    /// Its `name`.
    pub name: String,
    /// Pass, fail (`<failure>` or `<error>`) or skip (`<skipped>`).
    pub status: Status,
    /// The failure's message and text, when it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Its `time` in seconds, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
}

/// A step of the in-guest agent that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestStepError {
    /// `insmod`, `sriov`, `cpus`, `nested`, ...
    pub step: String,
    /// What failed, with the command's own message.
    pub detail: String,
}

/// Where a run's time went (seconds of wall time on the host, except the
/// two `guest_*` fields, which are the guest's uptime).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Before asking libvirt for the domain: the profile, the appliance
    /// (a cache lookup normally), the connection, the XML, the boot files
    /// staged on the host (and the wait for a `--jobs` slot).
    pub prepare: f64,
    /// Of `prepare`: making the boot files available on the host (an
    /// upload to a remote host's pool, or finding them there).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub stage: f64,
    /// Bytes uploaded to the host for this run (0: the files were there).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub uploaded: u64,
    /// libvirt starting the domain paused, its console opened, resumed.
    pub start: f64,
    /// From resume to the appliance's /init marker: firmware and kernel boot.
    pub boot: f64,
    /// From /init to the end marker: modules, CPUs online, the captures
    /// (and the nested step, if any) printed on the console.
    pub probe: f64,
    /// From the end marker to the verdict: captures written, parsed, checked.
    pub verdict: f64,
    /// The domain's destroy, after the verdict was printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teardown: Option<f64>,
    /// Boots before the one that counted (a hang was retried).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retried: u32,
    /// The guest's uptime when /init started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_init_uptime: Option<f64>,
    /// The guest's uptime at the end marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_done_uptime: Option<f64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_zero_f64(n: &f64) -> bool {
    *n == 0.0
}

/// Bytes in MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl Timings {
    /// One line: `prepare 0.08 s, start 0.41 s, boot 2.31 s, ...`.
    pub fn to_line(&self) -> String {
        let mut s = format!(
            "prepare {:.2} s, start {:.2} s, boot {:.2} s, probe {:.2} s, verdict {:.2} s",
            self.prepare, self.start, self.boot, self.probe, self.verdict
        );
        if let Some(t) = self.teardown {
            s.push_str(&format!(", teardown {t:.2} s"));
        }
        if self.stage > 0.0 {
            s.push_str(&format!("; boot files staged in {:.2} s", self.stage));
            if self.uploaded > 0 {
                s.push_str(&format!(" ({:.1} MiB uploaded)", mib(self.uploaded)));
            }
        }
        if let (Some(i), Some(d)) = (self.guest_init_uptime, self.guest_done_uptime) {
            s.push_str(&format!(
                " (guest uptime {i:.2} s at /init, {d:.2} s at the end)"
            ));
        }
        if self.retried > 0 {
            s.push_str(&format!("; {} boot(s) retried before", self.retried));
        }
        s
    }
}

impl Report {
    /// Judges checks: pass when at least one ran and none failed. With
    /// `require_all`, skipped checks count as failures.
    pub fn from_checks(profile: &str, mut checks: Vec<Check>, require_all: bool) -> Report {
        if require_all {
            for c in checks.iter_mut().filter(|c| c.status == Status::Skip) {
                c.status = Status::Fail;
                c.message = format!("not captured, and --require-all is set: {}", c.message);
            }
        }
        let ran = checks.iter().any(|c| c.status != Status::Skip);
        let failed = checks.iter().any(|c| c.status == Status::Fail);
        let verdict = if ran && !failed {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        Report {
            profile: profile.to_string(),
            verdict,
            checks,
            error: None,
            host: None,
            seconds: None,
            timings: None,
            guest_errors: Vec::new(),
            artifacts: None,
            user_junit: Vec::new(),
        }
    }

    /// A report without checks: the run failed before a verdict, or was skipped.
    pub fn without_checks(profile: &str, verdict: Verdict, why: String) -> Report {
        Report {
            profile: profile.to_string(),
            verdict,
            checks: vec![],
            error: Some(why),
            host: None,
            seconds: None,
            timings: None,
            guest_errors: Vec::new(),
            artifacts: None,
            user_junit: Vec::new(),
        }
    }

    /// Counts of (passed, failed, skipped).
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |s| self.checks.iter().filter(|c| c.status == s).count();
        (n(Status::Pass), n(Status::Fail), n(Status::Skip))
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// A short table for people: failures first with expected and observed,
    /// then passes and skips, then a summary line.
    pub fn to_human(&self, verbose: bool) -> String {
        let mut out = String::new();
        let width = self
            .checks
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(0)
            .min(48);
        let mut rows: Vec<&Check> = self.checks.iter().collect();
        rows.sort_by_key(|c| match c.status {
            Status::Fail => 0,
            Status::Pass => 1,
            Status::Skip => 2,
        });
        for c in rows {
            match c.status {
                Status::Fail => {
                    let _ = writeln!(out, "  FAIL  {:width$}  {}", c.id, c.message);
                    let _ = writeln!(out, "        {:width$}  expected: {}", "", c.expected);
                    let _ = writeln!(out, "        {:width$}  observed: {}", "", c.observed);
                }
                Status::Pass if verbose => {
                    let _ = writeln!(out, "  pass  {:width$}  {}", c.id, c.observed);
                }
                Status::Skip if verbose => {
                    let _ = writeln!(out, "  skip  {:width$}  {}", c.id, c.message);
                }
                _ => {}
            }
        }
        let (p, f, s) = self.counts();
        let word = match self.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Error => "ERROR",
            Verdict::Skipped => "SKIPPED",
        };
        let _ = write!(
            out,
            "{}: {word}: {p} passed, {f} failed, {s} skipped",
            self.profile
        );
        if let Some(secs) = self.seconds {
            let _ = write!(out, " in {secs:.1} s");
        }
        if let Some(h) = &self.host {
            let _ = write!(out, " on {h}");
        }
        out.push('\n');
        if let Some(e) = &self.error {
            let _ = writeln!(out, "  {e}");
        }
        for g in &self.guest_errors {
            let _ = writeln!(out, "  guest step failed: {}: {}", g.step, g.detail);
        }
        if !self.user_junit.is_empty() {
            let n = |st| self.user_junit.iter().filter(|c| c.status == st).count();
            let _ = writeln!(
                out,
                "  your JUnit: {} passed, {} failed, {} skipped",
                n(Status::Pass),
                n(Status::Fail),
                n(Status::Skip)
            );
            for c in self.user_junit.iter().filter(|c| c.status == Status::Fail) {
                let _ = writeln!(
                    out,
                    "    FAIL {}.{}: {}",
                    c.classname,
                    c.name,
                    c.message.lines().next().unwrap_or("")
                );
            }
        }
        if let Some(a) = &self.artifacts {
            let _ = writeln!(out, "  artifacts: {a}");
        }
        if let (true, Some(t)) = (verbose, &self.timings) {
            let _ = writeln!(out, "  time: {}", t.to_line());
        }
        out
    }
}

/// What a set of reports amounts to, for an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overall {
    /// Every profile passed (or was skipped, without `strict`).
    Pass,
    /// A check failed.
    Fail,
    /// A run had no verdict (infrastructure).
    Error,
    /// A profile was skipped and `strict` asks for everything to run.
    Skipped,
}

/// Sums up reports: an error outweighs a failure, which outweighs a pass;
/// with `strict`, a skipped profile counts as an error of its own kind.
pub fn overall(reports: &[Report], strict: bool) -> Overall {
    let any = |v: Verdict| reports.iter().any(|r| r.verdict == v);
    if strict && any(Verdict::Skipped) {
        Overall::Skipped
    } else if any(Verdict::Error) {
        Overall::Error
    } else if any(Verdict::Fail) {
        Overall::Fail
    } else {
        Overall::Pass
    }
}

/// JUnit XML for CI dashboards: one testsuite per profile, one testcase per
/// check; an errored or skipped profile is one testcase carrying the
/// reason; the agent's failed steps go to the suite's `<system-err>`.
/// Written with quick-xml, which escapes every attribute and text.
pub fn junit(reports: &[Report]) -> String {
    junit::write(reports)
}

mod junit;

pub use junit::user_junit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_show_with_verbose_and_in_json() {
        let mut r = Report::from_checks("p", vec![], false);
        r.timings = Some(Timings {
            prepare: 0.081,
            stage: 0.0,
            uploaded: 0,
            start: 0.412,
            boot: 2.3,
            probe: 1.25,
            verdict: 0.004,
            teardown: Some(0.21),
            retried: 0,
            guest_init_uptime: Some(2.07),
            guest_done_uptime: Some(3.39),
        });
        assert!(!r.to_human(false).contains("time:"));
        assert!(r.to_human(true).contains(
            "  time: prepare 0.08 s, start 0.41 s, boot 2.30 s, probe 1.25 s, verdict 0.00 s, \
             teardown 0.21 s (guest uptime 2.07 s at /init, 3.39 s at the end)\n"
        ));
        let json = r.to_json();
        assert!(json.contains("\"teardown\": 0.21"), "{json}");
        assert!(!json.contains("retried"), "{json}");
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back.timings, r.timings);
    }

    #[test]
    fn verdict_rules() {
        let pass = Check::judge("a", true, "x", "x", "ok");
        let skip = Check::skip("b", "y", "not captured");
        assert_eq!(
            Report::from_checks("p", vec![pass.clone(), skip.clone()], false).verdict,
            Verdict::Pass
        );
        assert_eq!(
            Report::from_checks("p", vec![pass, skip.clone()], true).verdict,
            Verdict::Fail
        );
        assert_eq!(
            Report::from_checks("p", vec![skip], false).verdict,
            Verdict::Fail
        );
        assert_eq!(
            Report::from_checks("p", vec![], false).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn overall_outcome() {
        let r = |v| Report::without_checks("p", v, String::new());
        use Verdict::*;
        assert_eq!(overall(&[r(Pass), r(Skipped)], false), Overall::Pass);
        assert_eq!(overall(&[r(Pass), r(Skipped)], true), Overall::Skipped);
        assert_eq!(overall(&[r(Fail), r(Error)], false), Overall::Error);
        assert_eq!(overall(&[r(Fail), r(Pass)], false), Overall::Fail);
        assert_eq!(overall(&[], true), Overall::Pass);
    }

    #[test]
    fn junit_escapes() {
        let r = Report::from_checks(
            "p",
            vec![Check::judge("a<b", false, "\"x\"", "y&z", "m")],
            false,
        );
        let x = junit(&[r]);
        assert!(x.contains("a&lt;b") && x.contains("y&amp;z") && x.contains("&quot;x&quot;"));
    }

    #[test]
    fn the_host_is_named_everywhere() {
        let mut r = Report::from_checks("p", vec![Check::judge("a", true, "x", "x", "ok")], false);
        r.seconds = Some(1.0);
        r.host = Some("qemu+tcp://h:16509/system?x=1&y=2".into());
        assert!(r
            .to_human(false)
            .ends_with("p: PASS: 1 passed, 0 failed, 0 skipped in 1.0 s on qemu+tcp://h:16509/system?x=1&y=2\n"));
        assert!(r
            .to_json()
            .contains("\"host\": \"qemu+tcp://h:16509/system?x=1&y=2\""));
        let x = junit(&[r]);
        assert!(
            x.contains("<testsuite name=\"p\" tests=\"1\" failures=\"0\" errors=\"0\" skipped=\"0\" time=\"1.000\" hostname=\"qemu+tcp://h:16509/system?x=1&amp;y=2\">"),
            "{x}"
        );
        assert!(
            x.contains("<property name=\"host\" value=\"qemu+tcp://h:16509/system?x=1&amp;y=2\"/>"),
            "{x}"
        );
        // No host, no attribute.
        let x = junit(&[Report::without_checks("q", Verdict::Skipped, "why".into())]);
        assert!(
            !x.contains("hostname") && !x.contains("<properties>"),
            "{x}"
        );
    }
}
