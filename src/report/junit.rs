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
    let total: usize = reports.iter().map(|r| r.checks.len().max(1)).sum();
    let failures: usize = reports.iter().map(|r| r.counts().1).sum();
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

fn suite(w: &mut W, r: &Report) {
    let (_, f, s) = r.counts();
    let e = usize::from(r.verdict == Verdict::Error);
    let mut attrs = vec![
        ("name", r.profile.clone()),
        ("tests", r.checks.len().max(1).to_string()),
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
