//! JUnit XML through quick-xml's writer.

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use super::{Report, Status, Verdict};

type W = Writer<Vec<u8>>;

/// Characters XML 1.0 cannot carry at all (control characters other than
/// tab and newline), replaced by a space.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if (c as u32) < 0x20 && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

fn start(w: &mut W, name: &str, attrs: &[(&str, String)], empty: bool) {
    let mut e = BytesStart::new(name);
    for (k, v) in attrs {
        e.push_attribute((*k, clean(v).as_str()));
    }
    let _ = w.write_event(if empty {
        Event::Empty(e)
    } else {
        Event::Start(e)
    });
}

fn end(w: &mut W, name: &str) {
    let _ = w.write_event(Event::End(BytesEnd::new(name)));
}

fn text(w: &mut W, s: &str) {
    let _ = w.write_event(Event::Text(BytesText::new(&clean(s))));
}

/// The whole document.
pub(super) fn write(reports: &[Report]) -> String {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    let total: usize = reports
        .iter()
        .map(|r| r.checks.len().max(1) + r.user_junit.len())
        .sum();
    let failures: usize = reports
        .iter()
        .map(|r| r.counts().1 + user_count(r, Status::Fail))
        .sum();
    let errors = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Error)
        .count();
    start(
        &mut w,
        "testsuites",
        &[
            ("name", "nestlab".into()),
            ("tests", total.to_string()),
            ("failures", failures.to_string()),
            ("errors", errors.to_string()),
        ],
        false,
    );
    for r in reports {
        suite(&mut w, r);
    }
    end(&mut w, "testsuites");
    let mut out = String::from_utf8(w.into_inner()).unwrap_or_default();
    out.push('\n');
    out
}

fn user_count(r: &Report, st: Status) -> usize {
    r.user_junit.iter().filter(|c| c.status == st).count()
}

fn suite(w: &mut W, r: &Report) {
    let (_, f, s) = r.counts();
    let (f, s) = (
        f + user_count(r, Status::Fail),
        s + user_count(r, Status::Skip),
    );
    let e = usize::from(r.verdict == Verdict::Error);
    let mut attrs = vec![
        ("name", r.profile.clone()),
        (
            "tests",
            (r.checks.len().max(1) + r.user_junit.len()).to_string(),
        ),
        ("failures", f.to_string()),
        ("errors", e.to_string()),
        ("skipped", s.to_string()),
        ("time", format!("{:.3}", r.seconds.unwrap_or(0.0))),
    ];
    // Which host ran it: JUnit's own attribute, and a property for the
    // dashboards that show only properties.
    if let Some(h) = &r.host {
        attrs.push(("hostname", h.clone()));
    }
    start(w, "testsuite", &attrs, false);
    if let Some(h) = &r.host {
        start(w, "properties", &[], false);
        start(
            w,
            "property",
            &[("name", "host".to_string()), ("value", h.clone())],
            true,
        );
        end(w, "properties");
    }
    if r.checks.is_empty() {
        let why = r.error.clone().unwrap_or_default();
        let attrs = [
            ("classname", r.profile.clone()),
            ("name", "run".to_string()),
        ];
        match r.verdict {
            Verdict::Pass => start(w, "testcase", &attrs, true),
            Verdict::Skipped => {
                start(w, "testcase", &attrs, false);
                start(w, "skipped", &[("message", why)], true);
                end(w, "testcase");
            }
            _ => {
                start(w, "testcase", &attrs, false);
                start(w, "error", &[("message", why)], true);
                end(w, "testcase");
            }
        }
    }
    for c in &r.checks {
        let attrs = [("classname", r.profile.clone()), ("name", c.id.clone())];
        match c.status {
            Status::Pass => start(w, "testcase", &attrs, true),
            Status::Skip => {
                start(w, "testcase", &attrs, false);
                start(w, "skipped", &[("message", c.message.clone())], true);
                end(w, "testcase");
            }
            Status::Fail => {
                start(w, "testcase", &attrs, false);
                start(w, "failure", &[("message", c.message.clone())], false);
                text(
                    w,
                    &format!("expected: {}\nobserved: {}", c.expected, c.observed),
                );
                end(w, "failure");
                end(w, "testcase");
            }
        }
    }
    // The user's own test cases, from the JUnit files of the artifacts.
    for c in &r.user_junit {
        let mut attrs = vec![
            ("classname", format!("{}.{}", r.profile, c.classname)),
            ("name", c.name.clone()),
        ];
        if let Some(t) = c.time {
            attrs.push(("time", format!("{t:.3}")));
        }
        match c.status {
            Status::Pass => start(w, "testcase", &attrs, true),
            Status::Skip => {
                start(w, "testcase", &attrs, false);
                start(w, "skipped", &[], true);
                end(w, "testcase");
            }
            Status::Fail => {
                start(w, "testcase", &attrs, false);
                let first = c.message.lines().next().unwrap_or("").to_string();
                start(w, "failure", &[("message", first)], false);
                text(w, &format!("{} (from {})", c.message, c.file));
                end(w, "failure");
                end(w, "testcase");
            }
        }
    }
    if !r.guest_errors.is_empty() {
        start(w, "system-err", &[], false);
        let lines: Vec<String> = r
            .guest_errors
            .iter()
            .map(|g| format!("guest step failed: {}: {}", g.step, g.detail))
            .collect();
        text(w, &lines.join("\n"));
        end(w, "system-err");
    }
    end(w, "testsuite");
}

/// The JUnit files (`*.xml`) a workload wrote anywhere under `artifacts`,
/// read into test cases. A file that is not JUnit becomes one failed case
/// naming the file and why, so a broken report is not silently dropped.
pub fn user_junit(artifacts: &std::path::Path) -> Vec<super::UserCase> {
    let mut files = Vec::new();
    collect_xml(artifacts, &mut files, 0);
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(artifacts)
            .unwrap_or(&path)
            .display()
            .to_string();
        let text = match std::fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                out.push(broken(&rel, &e.to_string()));
                continue;
            }
        };
        match read_cases(&text, &rel) {
            Ok(cases) => out.extend(cases),
            Err(why) => out.push(broken(&rel, &why)),
        }
    }
    out
}

fn broken(file: &str, why: &str) -> super::UserCase {
    super::UserCase {
        file: file.to_string(),
        classname: "nestlab.artifacts".into(),
        name: file.to_string(),
        status: Status::Fail,
        message: format!("{file} is not a JUnit file nestlab can read: {why}"),
        time: None,
    }
}

fn collect_xml(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>, depth: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() && depth < 8 {
            collect_xml(&p, out, depth + 1);
        } else if ft.is_file() && p.extension().is_some_and(|x| x == "xml") {
            out.push(p);
        }
    }
}

/// The test cases of one JUnit document (`<testsuites>` or a lone
/// `<testsuite>`; nested suites too).
fn read_cases(text: &str, file: &str) -> Result<Vec<super::UserCase>, String> {
    use quick_xml::events::Event as E;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut suites: Vec<String> = Vec::new();
    let mut case: Option<super::UserCase> = None;
    let mut in_failure = false;
    let mut out = Vec::new();
    let mut saw_junit = false;
    let attr = |e: &quick_xml::events::BytesStart, key: &[u8]| -> Option<String> {
        e.attributes()
            .flatten()
            .find(|a| a.key.as_ref() == key)
            .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
    };
    loop {
        let ev = reader.read_event().map_err(|e| {
            format!(
                "line {}: {e}",
                line_at(text, reader.buffer_position() as usize)
            )
        })?;
        match ev {
            E::Eof => break,
            E::Start(e) | E::Empty(e) if e.name().as_ref() == b"testsuites" => saw_junit = true,
            E::Start(e) if e.name().as_ref() == b"testsuite" => {
                saw_junit = true;
                suites.push(attr(&e, b"name").unwrap_or_default());
            }
            E::End(e) if e.name().as_ref() == b"testsuite" => {
                suites.pop();
            }
            ref ev @ (E::Start(ref e) | E::Empty(ref e)) if e.name().as_ref() == b"testcase" => {
                saw_junit = true;
                let c = super::UserCase {
                    file: file.to_string(),
                    classname: attr(e, b"classname")
                        .or_else(|| suites.last().cloned())
                        .unwrap_or_default(),
                    name: attr(e, b"name").unwrap_or_default(),
                    status: Status::Pass,
                    message: String::new(),
                    time: attr(e, b"time").and_then(|t| t.parse().ok()),
                };
                if matches!(ev, E::Empty(_)) {
                    out.push(c);
                } else {
                    case = Some(c);
                }
            }
            E::End(e) if e.name().as_ref() == b"testcase" => out.extend(case.take()),
            ref ev @ (E::Start(ref e) | E::Empty(ref e)) => {
                let kind = e.name().as_ref().to_vec();
                if let Some(c) = case.as_mut() {
                    match kind.as_slice() {
                        b"failure" | b"error" => {
                            c.status = Status::Fail;
                            c.message = attr(e, b"message").unwrap_or_default();
                            in_failure = matches!(ev, E::Start(_));
                        }
                        b"skipped" if c.status == Status::Pass => c.status = Status::Skip,
                        _ => {}
                    }
                }
            }
            E::End(e) if matches!(e.name().as_ref(), b"failure" | b"error") => in_failure = false,
            E::Text(t) if in_failure => {
                if let (Some(c), Ok(t)) = (case.as_mut(), t.unescape()) {
                    let t = t.trim();
                    if !t.is_empty() {
                        if !c.message.is_empty() {
                            c.message.push('\n');
                        }
                        c.message.push_str(t);
                    }
                }
            }
            _ => {}
        }
    }
    if !saw_junit {
        return Err("no <testsuites>, <testsuite> or <testcase> in it".into());
    }
    Ok(out)
}

fn line_at(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_junit_is_read_and_merged() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("sub")).unwrap();
        std::fs::write(
            d.path().join("sub/results.xml"),
            r#"<?xml version="1.0"?><testsuites><testsuite name="numa" tests="3">
<testcase classname="numa.pin" name="node2" time="0.5"/>
<testcase name="node0"><failure message="wrong node">expected 0
got 1</failure></testcase>
<testcase name="later"><skipped/></testcase></testsuite></testsuites>"#,
        )
        .unwrap();
        std::fs::write(d.path().join("notes.xml"), "<notes/>").unwrap();
        let cases = user_junit(d.path());
        assert_eq!(cases.len(), 4, "{cases:?}");
        assert_eq!(cases[0].file, "notes.xml");
        assert_eq!(cases[0].status, Status::Fail);
        assert_eq!(
            (
                cases[1].classname.as_str(),
                cases[1].name.as_str(),
                cases[1].time
            ),
            ("numa.pin", "node2", Some(0.5))
        );
        assert_eq!(cases[2].classname, "numa", "the suite's name");
        assert_eq!(cases[2].status, Status::Fail);
        assert_eq!(cases[2].message, "wrong node\nexpected 0\ngot 1");
        assert_eq!(cases[3].status, Status::Skip);
        let mut r = Report::from_checks(
            "p",
            vec![super::super::Check::judge("workload.t", true, "", "", "")],
            false,
        );
        r.user_junit = cases;
        let x = write(&[r]);
        assert!(
            x.contains(r#"<testsuite name="p" tests="5" failures="2" errors="0" skipped="1""#),
            "{x}"
        );
        assert!(
            x.contains(r#"<testcase classname="p.numa.pin" name="node2" time="0.500"/>"#),
            "{x}"
        );
        assert!(x.contains(r#"<failure message="wrong node">"#), "{x}");
    }

    #[test]
    fn garbage_is_a_failed_case_not_a_panic() {
        for bad in ["<testsuite", "not xml at all", "<a><b></a>"] {
            assert!(read_cases(bad, "x.xml").is_err(), "{bad}");
        }
    }
}
