//! Bad input at scale: profiles generated here (not files) that are wrong
//! in every way a file can be wrong, beyond the hand-written pairs in
//! tests/profiles/bad. Each one must make `nestlab validate FILE` exit 2
//! with one line starting `error: ` that locates the problem (the field's
//! path, or `:<line>:`), never a panic, and `load_profile_str` must return
//! `Err` for it without panicking.
//!
//! The inputs: huge and negative numbers in every integer field, wrong
//! types in every field, unicode everywhere, very long strings and cpusets,
//! 10,000-deep arrays and inline tables, duplicated keys and tables, a
//! 100 MB sparse file, an empty file, NUL bytes, a BOM, CRLF and bare CR
//! line ends, invalid UTF-8. Wall time is measured (the slowest are
//! printed), not asserted; a case that has not finished after
//! [`HANG_LIMIT`] is killed and counts as a hang.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What a case may take before it counts as hanging (a debug build on a
/// busy 2-core machine is slow: this only catches what never ends).
const HANG_LIMIT: Duration = Duration::from_secs(300);
/// What a case should take (reported, not asserted).
const SLOW: Duration = Duration::from_secs(5);
/// The size limit nestlab applies to profile files (README).
const MAX_PROFILE_BYTES: usize = 256 * 1024;

// ---------------------------------------------------------------------------
// A valid profile that uses every field, as lines that cases can change.

/// The base profile, one line each: `(path, key, value)` for a field,
/// where `path` is the field as nestlab names it (`node[0].cpus`), or
/// `("", header, "")` for a table header.
const BASE: &[(&str, &str, &str)] = &[
    ("name", "name", r#""base""#),
    ("description", "description", r#""every field, valid""#),
    ("vcpus", "vcpus", "4"),
    ("memory", "memory", r#""1 GiB""#),
    ("", "[cpu]", ""),
    ("cpu.sockets", "sockets", "1"),
    ("cpu.dies", "dies", "1"),
    ("cpu.cores", "cores", "2"),
    ("cpu.threads", "threads", "2"),
    ("", "[[node]]", ""),
    ("node[0].id", "id", "0"),
    ("node[0].cpus", "cpus", r#""0-3""#),
    ("node[0].memory", "memory", r#""1 GiB""#),
    ("node[0].distances", "distances", "[10]"),
    ("node[0].hugepages", "hugepages", r#"{ "2M" = 8 }"#),
    ("", "[iommu]", ""),
    ("iommu.model", "model", r#""intel""#),
    ("iommu.intremap", "intremap", "true"),
    ("iommu.caching_mode", "caching_mode", "true"),
    ("iommu.eim", "eim", "false"),
    ("iommu.iotlb", "iotlb", "false"),
    ("", "[[expander]]", ""),
    ("expander[0].node", "node", "0"),
    ("expander[0].bus", "bus", "100"),
    ("expander[0].root_ports", "root_ports", "2"),
    ("", "[[nic]]", ""),
    ("nic[0].model", "model", r#""e1000e""#),
    ("nic[0].node", "node", "0"),
    ("nic[0].count", "count", "1"),
    ("", "[[nic]]", ""),
    ("nic[1].model", "model", r#""igb""#),
    ("nic[1].node", "node", "0"),
    ("nic[1].vfs", "vfs", "2"),
    ("", "[guest]", ""),
    ("guest.cmdline_extra", "cmdline_extra", r#""quiet""#),
    ("", "[nested]", ""),
    ("nested.assign", "assign", r#"["nic0"]"#),
    ("", "[[interconnect]]", ""),
    ("interconnect[0].initiator", "initiator", "0"),
    ("interconnect[0].target", "target", "0"),
    ("interconnect[0].latency_ns", "latency_ns", "10"),
    ("interconnect[0].bandwidth_mib_s", "bandwidth_mib_s", "1024"),
    ("", "[tuning]", ""),
    ("tuning.emulatorpin", "emulatorpin", r#""0-1""#),
    ("", "[[tuning.vcpupin]]", ""),
    ("tuning.vcpupin[0].vcpus", "vcpus", r#""0-3""#),
    ("tuning.vcpupin[0].cpus", "cpus", r#""0-1""#),
    ("", "[tuning.numatune]", ""),
    ("tuning.numatune.mode", "mode", r#""strict""#),
    ("tuning.numatune.nodeset", "nodeset", r#""0""#),
    ("", "[[tuning.memnode]]", ""),
    ("tuning.memnode[0].cell", "cell", "0"),
    ("tuning.memnode[0].mode", "mode", r#""strict""#),
    ("tuning.memnode[0].nodeset", "nodeset", r#""0""#),
    ("", "[[tuning.hugepages]]", ""),
    ("tuning.hugepages[0].cell", "cell", "0"),
    ("tuning.hugepages[0].size", "size", r#""2M""#),
];

/// The fields of the base profile, with the kind of value each takes.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Str,
    Int,
    Bool,
    IntArray,
    StrArray,
    Table,
}

fn kind_of(path: &str) -> Kind {
    match path {
        "name"
        | "description"
        | "memory"
        | "node[0].cpus"
        | "node[0].memory"
        | "iommu.model"
        | "nic[0].model"
        | "nic[1].model"
        | "guest.cmdline_extra"
        | "tuning.emulatorpin"
        | "tuning.vcpupin[0].vcpus"
        | "tuning.vcpupin[0].cpus"
        | "tuning.numatune.mode"
        | "tuning.numatune.nodeset"
        | "tuning.memnode[0].mode"
        | "tuning.memnode[0].nodeset"
        | "tuning.hugepages[0].size" => Kind::Str,
        "node[0].hugepages" => Kind::Table,
        "iommu.intremap" | "iommu.caching_mode" | "iommu.eim" | "iommu.iotlb" => Kind::Bool,
        "node[0].distances" => Kind::IntArray,
        "nested.assign" => Kind::StrArray,
        _ => Kind::Int,
    }
}

fn field_paths() -> Vec<&'static str> {
    BASE.iter()
        .map(|(path, _, _)| *path)
        .filter(|p| !p.is_empty())
        .collect()
}

/// The base profile with `path`'s value replaced by `value` (raw TOML);
/// returns the text and the 1-based line of that field.
fn with_value(path: &str, value: &str) -> (String, usize) {
    let mut text = String::new();
    let mut at = 0;
    for (i, (p, key, v)) in BASE.iter().enumerate() {
        if p.is_empty() {
            writeln!(text, "{key}").unwrap();
            continue;
        }
        let v = if *p == path {
            at = i + 1;
            value
        } else {
            v
        };
        writeln!(text, "{key} = {v}").unwrap();
    }
    assert_ne!(at, 0, "no field {path}");
    (text, at)
}

/// The 1-based line of a field (by path) or a table header in the base
/// profile.
fn line(what: &str) -> usize {
    BASE.iter()
        .position(|(path, key, _)| *path == what || (path.is_empty() && *key == what))
        .unwrap_or_else(|| panic!("no {what} in the base profile"))
        + 1
}

/// The line just past the base profile (what is appended to it).
fn end() -> usize {
    BASE.len() + 1
}

fn base() -> String {
    with_value("name", r#""base""#).0
}

/// A TOML basic string holding `s`, escaped.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => write!(out, "\\u{:04X}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------
// Cases.

/// What a case's file is.
enum Content {
    Bytes(Vec<u8>),
    /// A sparse file of this many NUL bytes (`set_len`).
    Sparse(u64),
}

struct Case {
    name: String,
    content: Content,
    /// The error must contain one of these (a field path, `:<line>:`, or
    /// for a file refused before parsing the documented reason).
    cli_wants: Vec<String>,
    /// The same for `load_profile_str`'s error (no size limit there).
    lib_wants: Vec<String>,
}

/// What names a field in an error: ` path:` or ` path[` (an element).
/// What names a field in a message: the field itself, one of its
/// elements, or one of its keys (`node[0].hugepages.4K`).
fn names_field(path: &str) -> Vec<String> {
    vec![
        format!(" {path}:"),
        format!(" {path}["),
        format!(" {path}."),
    ]
}

fn at_line(line: usize) -> String {
    format!(":{line}:")
}

impl Case {
    fn new(name: impl Into<String>, text: impl Into<Vec<u8>>, wants: Vec<String>) -> Case {
        let content = text.into();
        let mut cli_wants = wants.clone();
        if content.len() > MAX_PROFILE_BYTES {
            cli_wants = vec!["too large for a profile".to_string()];
        }
        Case {
            name: name.into(),
            content: Content::Bytes(content),
            cli_wants,
            lib_wants: wants,
        }
    }

    /// The base profile with the field at `path` set to `value`.
    fn field(name: impl Into<String>, path: &str, value: &str) -> Case {
        let (text, line) = with_value(path, value);
        let mut wants = names_field(path);
        wants.push(at_line(line));
        Case::new(name, text, wants)
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let fields = field_paths();
    let ints: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|p| kind_of(p) == Kind::Int)
        .collect();

    // Huge and negative numbers in every integer field (and in distances).
    let huge = [
        ("1e30", "1e30"),
        ("u64-max", "18446744073709551615"),
        ("i64-max", "9223372036854775807"),
        ("i64-min", "-9223372036854775808"),
        ("u32-max-plus-1", "4294967296"),
        ("minus-1", "-1"),
        ("minus-0x1", "-0x1"),
        ("nan", "nan"),
        ("minus-inf", "-inf"),
    ];
    for path in ints.iter().copied().chain(["node[0].distances"]) {
        for (tag, v) in huge {
            let value = if path == "node[0].distances" {
                format!("[{v}]")
            } else {
                v.to_string()
            };
            cases.push(Case::field(format!("{path}={tag}"), path, &value));
        }
    }
    // Sizes: out of range, negative, overflowing.
    for path in ["memory", "node[0].memory"] {
        for v in [
            "18446744073709551615 KiB",
            "99999999999999999999999 GiB",
            "-1 MiB",
            "0 MiB",
            "1e30 GiB",
            "17 TiB",
        ] {
            cases.push(Case::field(format!("{path}={v}"), path, &toml_str(v)));
        }
    }

    // Wrong types in every field.
    let wrong: &[(&str, &str, &[Kind])] = &[
        (
            "string",
            r#""4""#,
            &[
                Kind::Int,
                Kind::Bool,
                Kind::IntArray,
                Kind::StrArray,
                Kind::Table,
            ],
        ),
        (
            "int",
            "4",
            &[
                Kind::Str,
                Kind::Bool,
                Kind::IntArray,
                Kind::StrArray,
                Kind::Table,
            ],
        ),
        (
            "float",
            "4.0",
            &[
                Kind::Str,
                Kind::Int,
                Kind::Bool,
                Kind::IntArray,
                Kind::StrArray,
                Kind::Table,
            ],
        ),
        (
            "bool",
            "true",
            &[
                Kind::Str,
                Kind::Int,
                Kind::IntArray,
                Kind::StrArray,
                Kind::Table,
            ],
        ),
        (
            "datetime",
            "1979-05-27T07:32:00Z",
            &[
                Kind::Str,
                Kind::Int,
                Kind::Bool,
                Kind::IntArray,
                Kind::StrArray,
                Kind::Table,
            ],
        ),
        (
            "array",
            "[4]",
            &[Kind::Str, Kind::Int, Kind::Bool, Kind::Table],
        ),
        (
            "table",
            "{ a = 4 }",
            &[
                Kind::Str,
                Kind::Int,
                Kind::Bool,
                Kind::IntArray,
                Kind::StrArray,
                Kind::Table,
            ],
        ),
        (
            "empty-table",
            "{}",
            &[
                Kind::Str,
                Kind::Int,
                Kind::Bool,
                Kind::IntArray,
                Kind::StrArray,
            ],
        ),
        ("string-array", r#"["a"]"#, &[Kind::IntArray]),
        ("int-array", "[1]", &[Kind::StrArray]),
        ("nested-array", "[[10]]", &[Kind::IntArray, Kind::StrArray]),
    ];
    for path in &fields {
        for (tag, v, kinds) in wrong {
            if kinds.contains(&kind_of(path)) {
                cases.push(Case::field(format!("{path}:{tag}"), path, v));
            }
        }
    }
    // Whole tables and arrays of tables of the wrong shape.
    for (tag, text, line, field) in [
        (
            "node-as-table",
            "[node]\ncpus = \"0-3\"\nmemory = \"1 GiB\"\n",
            3,
            "node",
        ),
        ("node-as-string", "node = \"0-3\"\n", 3, "node"),
        ("node-array-of-ints", "node = [1, 2]\n", 3, "node"),
        (
            "iommu-as-array",
            "[[iommu]]\nmodel = \"intel\"\n",
            3,
            "iommu",
        ),
        ("iommu-as-bool", "iommu = true\n", 3, "iommu"),
        ("guest-as-string", "guest = \"quiet\"\n", 3, "guest"),
        ("nested-as-array", "nested = [\"nic0\"]\n", 3, "nested"),
        ("nic-as-table", "[nic]\nmodel = \"e1000e\"\n", 3, "nic"),
        ("expander-as-int", "expander = 3\n", 3, "expander"),
    ] {
        let text = format!("name = \"t\"\nvcpus = 4\n{text}");
        cases.push(Case::new(
            tag,
            text,
            vec![format!(" {field}:"), at_line(line)],
        ));
    }

    // Unicode everywhere: lookalikes, RTL and zero-width characters, emoji,
    // non-ASCII digits, in values and in keys.
    let uni: &[(&str, &str)] = &[
        ("name", "b\u{0430}se"),               // Cyrillic a
        ("name", "base\u{200b}"),              // zero-width space
        ("name", "\u{202e}esab"),              // right-to-left override
        ("name", "\u{05d0}\u{05d1}"),          // Hebrew
        ("name", "base-\u{1f600}"),            // emoji
        ("name", "\u{feff}base"),              // BOM inside a string
        ("name", "base\u{0301}"),              // combining accent
        ("name", "\u{ff42}ase"),               // fullwidth b
        ("node[0].cpus", "\u{0660}-\u{0663}"), // Arabic-Indic digits
        ("node[0].cpus", "\u{ff10}-\u{ff13}"), // fullwidth digits
        ("node[0].cpus", "0\u{2013}3"),        // en dash
        ("node[0].cpus", "0-3\u{200b}"),       // zero-width space
        ("node[0].cpus", "\u{1f600}"),
        ("node[0].memory", "\u{0661} GiB"),  // Arabic-Indic one
        ("node[0].memory", "1 G\u{0456}B"),  // Cyrillic i
        ("node[0].memory", "1 GiB\u{200d}"), // zero-width joiner
        ("memory", "\u{00b9} GiB"),          // superscript one
        ("iommu.model", "int\u{0435}l"),     // Cyrillic e
        ("iommu.model", "\u{202e}letni"),
        ("nic[0].model", "e1000e\u{200b}"),
        ("nic[0].model", "\u{1f5a7}"),
        ("nic[1].model", "IGB"),
        ("guest.cmdline_extra", "quiet \u{202e}"),
        ("guest.cmdline_extra", "caf\u{00e9}"),
        ("guest.cmdline_extra", "quiet\u{0000}init=/bin/sh"),
        ("guest.cmdline_extra", "quiet\ttab"),
    ];
    for (i, (path, s)) in uni.iter().enumerate() {
        cases.push(Case::field(
            format!("unicode-{i}:{path}"),
            path,
            &toml_str(s),
        ));
    }
    cases.push(Case::field(
        "unicode:nested.assign",
        "nested.assign",
        &format!("[{}]", toml_str("nic0\u{200b}")),
    ));
    cases.push(Case::field(
        "unicode:nested.assign-fullwidth",
        "nested.assign",
        &format!("[{}]", toml_str("\u{ff4e}ic0")),
    ));
    // Unicode keys and headers: unknown fields, on their line.
    for (tag, text, line) in [
        ("key-cyrillic", "n\u{0430}me = \"t\"\nvcpus = 4\n", 1),
        ("key-zero-width", "\"name\u{200b}\" = \"t\"\nvcpus = 4\n", 1),
        ("key-emoji", "name = \"t\"\n\"\u{1f600}\" = 4\n", 2),
        (
            "header-cyrillic",
            "name = \"t\"\nvcpus = 4\n[[n\u{043e}de]]\ncpus = \"0-3\"\n",
            3,
        ),
        (
            "header-rtl",
            "name = \"t\"\nvcpus = 4\n[\"\u{202e}ummoi\"]\nmodel = \"intel\"\n",
            3,
        ),
    ] {
        cases.push(Case::new(tag, text, vec![at_line(line)]));
    }

    // Very long strings and sets.
    let long_name = "a".repeat(1 << 20);
    cases.push(Case::field("name-1MB", "name", &toml_str(&long_name)));
    cases.push(Case::field(
        "name-200KB",
        "name",
        &toml_str(&"a".repeat(200_000)),
    ));
    cases.push(Case::field(
        "nic-model-200KB",
        "nic[0].model",
        &toml_str(&"x".repeat(200_000)),
    ));
    cases.push(Case::field(
        "iommu-model-200KB",
        "iommu.model",
        &toml_str(&"y".repeat(200_000)),
    ));
    cases.push(Case::field(
        "memory-200KB-digits",
        "node[0].memory",
        &toml_str(&format!("{} GiB", "9".repeat(200_000))),
    ));
    cases.push(Case::field(
        "cmdline-200KB-unicode",
        "guest.cmdline_extra",
        &toml_str(&"\u{e9}".repeat(100_000)),
    ));
    let cpus_100k: Vec<String> = (0..100_000).map(|c| c.to_string()).collect();
    cases.push(Case::field(
        "cpus-100k-entries",
        "node[0].cpus",
        &toml_str(&cpus_100k.join(",")),
    ));
    let cpus_40k: Vec<String> = (0..40_000).map(|c| c.to_string()).collect();
    cases.push(Case::field(
        "cpus-40k-entries",
        "node[0].cpus",
        &toml_str(&cpus_40k.join(",")),
    ));
    cases.push(Case::field(
        "cpus-40k-ranges-beyond",
        "node[0].cpus",
        &toml_str(&vec!["0-4095"; 37_000].join(",")),
    ));
    cases.push(Case::field(
        "cpus-range-u32",
        "node[0].cpus",
        &toml_str("0-4294967295"),
    ));
    cases.push(Case::field(
        "cpus-range-u64",
        "node[0].cpus",
        &toml_str("0-18446744073709551616"),
    ));
    cases.push(Case::field(
        "cpus-200KB-commas",
        "node[0].cpus",
        &toml_str(&",".repeat(200_000)),
    ));
    cases.push(Case::field(
        "distances-50k",
        "node[0].distances",
        &format!("[{}]", vec!["10"; 50_000].join(",")),
    ));
    cases.push(Case::field(
        "assign-40k",
        "nested.assign",
        &format!("[{}]", vec![r#""nic0""#; 40_000].join(",")),
    ));
    cases.push(Case::field(
        "name-100k-lines",
        "name",
        &format!("'''{}'''", "a\n".repeat(100_000)),
    ));

    // Deep nesting, 10,000 levels: arrays, inline tables, dotted keys.
    let deep = 10_000;
    let deep_array = format!("{}{}", "[".repeat(deep), "]".repeat(deep));
    let deep_table = format!("{}1{}", "{ a = ".repeat(deep), " }".repeat(deep));
    let deep_dotted = vec!["a"; deep].join(".");
    let nest = |tag: &str, text: String, line: usize, field: &str| {
        let mut wants = vec![at_line(line)];
        if !field.is_empty() {
            wants.extend(names_field(field));
        }
        Case::new(tag, text, wants)
    };
    cases.push(nest(
        "deep-array-unknown-key",
        format!("name = \"t\"\nvcpus = 4\na = {deep_array}\n"),
        3,
        "a",
    ));
    cases.push(nest(
        "deep-array-vcpus",
        format!("name = \"t\"\nvcpus = {deep_array}\n"),
        2,
        "vcpus",
    ));
    cases.push(nest(
        "deep-array-distances",
        with_value("node[0].distances", &deep_array).0,
        line("node[0].distances"),
        "node[0].distances",
    ));
    cases.push(nest(
        "deep-array-assign",
        with_value("nested.assign", &deep_array).0,
        line("nested.assign"),
        "nested.assign",
    ));
    cases.push(nest(
        "deep-array-unclosed",
        format!("name = \"t\"\nvcpus = 4\na = {}\n", "[".repeat(deep)),
        3,
        "",
    ));
    cases.push(nest(
        "deep-inline-table-unknown-key",
        format!("name = \"t\"\nvcpus = 4\na = {deep_table}\n"),
        3,
        "a",
    ));
    cases.push(nest(
        "deep-inline-table-iommu",
        format!("name = \"t\"\nvcpus = 4\niommu = {deep_table}\n"),
        3,
        "iommu",
    ));
    cases.push(nest(
        "deep-inline-table-name",
        format!("name = {deep_table}\nvcpus = 4\n"),
        1,
        "name",
    ));
    cases.push(nest(
        "deep-dotted-key",
        format!("name = \"t\"\nvcpus = 4\n{deep_dotted} = 1\n"),
        3,
        "a",
    ));
    cases.push(nest(
        "deep-dotted-header",
        format!("name = \"t\"\nvcpus = 4\n[{deep_dotted}]\n"),
        3,
        "a",
    ));
    cases.push(nest(
        "deep-dotted-array-header",
        format!("name = \"t\"\nvcpus = 4\n[[node.{deep_dotted}]]\n"),
        3,
        "node",
    ));
    cases.push(nest(
        "deep-mixed",
        format!(
            "name = \"t\"\nvcpus = 4\na = {}1{}\n",
            "[{ a = ".repeat(deep / 2),
            " }]".repeat(deep / 2)
        ),
        3,
        "a",
    ));

    // Duplicated keys and tables.
    let b = base();
    for (tag, text, line, field) in [
        (
            "dup-name",
            b.replacen(
                "name = \"base\"\n",
                "name = \"base\"\nname = \"other\"\n",
                1,
            ),
            2,
            "",
        ),
        ("dup-name-top", format!("name = \"a\"\n{b}"), 2, ""),
        (
            "dup-cpus",
            b.replacen("cpus = \"0-3\"\n", "cpus = \"0-3\"\ncpus = \"0-3\"\n", 1),
            line("node[0].cpus") + 1,
            "",
        ),
        (
            "dup-iommu-table",
            format!("{b}[iommu]\nmodel = \"intel\"\n"),
            end(),
            "",
        ),
        ("dup-guest-table", format!("{b}[guest]\n"), end(), ""),
        (
            "dup-iommu-inline-and-table",
            format!("iommu = {{ model = \"intel\" }}\n{b}"),
            line("[iommu]") + 1,
            "",
        ),
        (
            "dup-inline-key",
            "name = \"t\"\nvcpus = 4\niommu = { model = \"intel\", model = \"intel\" }\n"
                .to_string(),
            3,
            "",
        ),
        (
            "dup-node-table-after-array",
            format!("{b}[node]\ncpus = \"0\"\n"),
            end(),
            "",
        ),
        (
            "dup-dotted-then-table",
            format!("guest.cmdline_extra = \"x\"\n{b}"),
            line("[guest]") + 1,
            "",
        ),
        (
            "dup-quoted-key",
            "name = \"t\"\n\"name\" = \"u\"\nvcpus = 4\n".to_string(),
            2,
            "",
        ),
        (
            "dup-literal-key",
            "name = \"t\"\n'name' = \"u\"\nvcpus = 4\n".to_string(),
            2,
            "",
        ),
        (
            "dup-node-key",
            b.replace("[[node]]\n", "[[node]]\nid = 0\n"),
            line("node[0].id") + 1,
            "",
        ),
        (
            "dup-nested-assign-entry",
            with_value("nested.assign", r#"["nic0", "nic0"]"#).0,
            line("nested.assign"),
            "nested.assign",
        ),
    ] {
        let mut wants = vec![at_line(line)];
        if !field.is_empty() {
            wants.extend(names_field(field));
        }
        cases.push(Case::new(tag, text, wants));
    }

    // Files that are not profiles.
    cases.push(Case {
        name: "sparse-100MB".into(),
        content: Content::Sparse(100 * 1024 * 1024),
        cli_wants: vec!["too large for a profile".into()],
        lib_wants: vec![at_line(1)],
    });
    cases.push(Case::new(
        "empty",
        "",
        vec!["`name`".into(), "`vcpus`".into()],
    ));
    cases.push(Case::new(
        "only-whitespace",
        " \n\t\n\n",
        vec!["`name`".into()],
    ));
    cases.push(Case::new(
        "only-comment",
        "# name = \"t\"\n",
        vec!["`name`".into()],
    ));
    cases.push(Case::new(
        "nul-bytes-1KB",
        vec![0u8; 1024],
        vec![at_line(1)],
    ));
    cases.push(Case::new(
        "nul-in-key",
        b"name\0 = \"t\"\nvcpus = 4\n".to_vec(),
        vec![at_line(1)],
    ));
    cases.push(Case::new(
        "nul-in-string",
        b.replacen("\"base\"", "\"ba\0se\"", 1),
        vec![at_line(1), " name:".into()],
    ));
    cases.push(Case::new(
        "nul-after-valid",
        format!("{b}\0"),
        vec![at_line(end())],
    ));
    cases.push(Case::new(
        "bom-then-bad",
        format!("\u{feff}{}", with_value("vcpus", "0").0),
        vec![" vcpus:".into(), at_line(1)],
    ));
    cases.push(Case::new(
        "bom-in-middle",
        "name = \"t\"\n\u{feff}vcpus = 4\n".to_string(),
        vec![at_line(2)],
    ));
    cases.push(Case::new(
        "two-boms",
        format!("\u{feff}\u{feff}{b}"),
        vec![at_line(1)],
    ));
    cases.push(Case::new("utf16le-bom", utf16le(&b), vec![at_line(1)]));
    cases.push(Case::new(
        "crlf-bad-vcpus",
        with_value("vcpus", "\"4\"").0.replace('\n', "\r\n"),
        vec![at_line(3), " vcpus:".into()],
    ));
    cases.push(Case::new(
        "crlf-bad-cpus",
        with_value("node[0].cpus", "\"0-9\"")
            .0
            .replace('\n', "\r\n"),
        names_field("node[0].cpus"),
    ));
    cases.push(Case::new(
        "bare-cr-line-ends",
        b.replace('\n', "\r"),
        vec![at_line(1)],
    ));
    cases.push(Case::new(
        "mixed-cr-in-middle",
        b.replacen('\n', "\r", 3),
        vec![at_line(1)],
    ));
    // Invalid UTF-8: the error must say where (the line of the bad byte).
    for (tag, bytes, line) in [
        (
            "utf8-bad-byte-in-name",
            splice(&b, "\"base\"", b"\"ba\xffse\""),
            1,
        ),
        (
            "utf8-overlong-slash",
            splice(&b, "\"base\"", b"\"ba\xc0\xafse\""),
            1,
        ),
        (
            "utf8-surrogate",
            splice(&b, "\"0-3\"", b"\"0-3\xed\xa0\x80\""),
            line("node[0].cpus"),
        ),
        (
            "utf8-in-comment",
            splice(&b, "[iommu]", b"[iommu] # \xfe\xff"),
            line("[iommu]"),
        ),
        (
            "utf8-truncated-at-end",
            [b.as_bytes(), b"# \xe2\x82"].concat(),
            end(),
        ),
        (
            "utf8-latin1-file",
            splice(&b, "\"quiet\"", b"\"caf\xe9\""),
            line("guest.cmdline_extra"),
        ),
    ] {
        cases.push(Case::new(tag, bytes, vec![at_line(line)]));
    }
    cases
}

/// `text` with the first `what` replaced by raw bytes.
fn splice(text: &str, what: &str, with: &[u8]) -> Vec<u8> {
    let at = text.find(what).expect("splice point");
    [
        &text.as_bytes()[..at],
        with,
        &text.as_bytes()[at + what.len()..],
    ]
    .concat()
}

fn utf16le(text: &str) -> Vec<u8> {
    let mut out = vec![0xff, 0xfe];
    for u in text.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

// ---------------------------------------------------------------------------
// Running them.

struct Outcome {
    code: Option<i32>,
    stderr: String,
    stdout_len: usize,
    elapsed: Duration,
}

fn write_case(dir: &Path, i: usize, case: &Case) -> PathBuf {
    // Neutral names, so that no field name can come from the path.
    let path = dir.join(format!("c{i:03}.toml"));
    match &case.content {
        Content::Bytes(b) => std::fs::write(&path, b).unwrap(),
        Content::Sparse(len) => std::fs::File::create(&path).unwrap().set_len(*len).unwrap(),
    }
    path
}

fn run_validate(path: &Path) -> Outcome {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nestlab"))
        .arg("validate")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the pipes on threads so a chatty child cannot block on them.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut so, &mut v).ok();
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut se, &mut v).ok();
        v
    });
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > HANG_LIMIT {
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = start.elapsed();
    Outcome {
        code,
        stdout_len: out_t.join().unwrap().len(),
        stderr: String::from_utf8_lossy(&err_t.join().unwrap()).into_owned(),
        elapsed,
    }
}

enum LibOutcome {
    Err(String, Duration),
    Ok(Duration),
    Panicked(String),
    Hung,
    /// Not UTF-8: `load_profile_str` takes `&str`, so there is nothing to call.
    NotText,
}

/// Starts `load_profile_str` on a thread of its own (with a main thread's
/// stack size, as the CLI has), so that a panic is caught and a hang
/// noticed; it runs while the CLI runs.
fn start_lib(text: String) -> mpsc::Receiver<LibOutcome> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let start = Instant::now();
            let r = std::panic::catch_unwind(|| {
                nestlab::load_profile_str(&text, "case.toml")
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            let elapsed = start.elapsed();
            let _ = tx.send(match r {
                Ok(Err(e)) => LibOutcome::Err(e, elapsed),
                Ok(Ok(())) => LibOutcome::Ok(elapsed),
                Err(p) => LibOutcome::Panicked(
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default(),
                ),
            });
        })
        .unwrap();
    rx
}

fn short(s: &str) -> String {
    let s = s.trim_end();
    if s.chars().count() > 300 {
        format!(
            "{}... ({} bytes)",
            s.chars().take(300).collect::<String>(),
            s.len()
        )
    } else {
        s.to_string()
    }
}

/// Every case, run once through the CLI and the library (both tests below
/// look at the same results).
struct Ran {
    case: Case,
    cli: Outcome,
    lib: LibOutcome,
}

fn ran() -> &'static [Ran] {
    static RAN: OnceLock<Vec<Ran>> = OnceLock::new();
    RAN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        for (i, case) in cases().into_iter().enumerate() {
            let path = write_case(dir.path(), i, &case);
            let text = match &case.content {
                Content::Bytes(b) => String::from_utf8(b.clone()).ok(),
                Content::Sparse(len) => Some("\0".repeat(*len as usize)),
            };
            let lib = text.map(start_lib);
            let cli = run_validate(&path);
            let lib = match lib {
                None => LibOutcome::NotText,
                Some(rx) => rx.recv_timeout(HANG_LIMIT).unwrap_or(LibOutcome::Hung),
            };
            if std::env::var_os("BAD_INPUT_DUMP").is_some() {
                eprintln!(
                    "c{i:03} {:<40} {:?} {}",
                    case.name,
                    cli.code,
                    short(&cli.stderr)
                );
            }
            out.push(Ran { case, cli, lib });
        }
        out
    })
}

fn what(i: usize, r: &Ran) -> String {
    format!("{} (c{i:03}.toml)", r.case.name)
}

fn report(title: &str, failures: &[String]) {
    for f in failures {
        eprintln!("FAIL {f}");
    }
    assert!(
        failures.is_empty(),
        "{title}: {} failures (listed above)",
        failures.len()
    );
}

/// Exit 2, `error: ` and no panic from the CLI; `Err` and no panic from the
/// library; neither hangs.
#[test]
fn bad_inputs_are_refused_with_exit_2() {
    let ran = ran();
    assert!(ran.len() >= 40, "only {} cases", ran.len());
    let mut failures = Vec::new();
    let mut refused = 0;
    let mut times: Vec<(Duration, String)> = Vec::new();
    for (i, r) in ran.iter().enumerate() {
        let what = what(i, r);
        let o = &r.cli;
        times.push((o.elapsed, format!("{what}, nestlab validate")));
        match o.code {
            Some(2) => refused += 1,
            None if o.elapsed >= HANG_LIMIT => failures.push(format!(
                "[hang] {what}: validate still running after {HANG_LIMIT:?}"
            )),
            Some(0) => failures.push(format!("[accepted] {what}: validate exited 0")),
            code => failures.push(format!(
                "[exit] {what}: validate exited {code:?}, not 2: {}",
                short(&o.stderr)
            )),
        }
        if o.stderr.contains("panicked") {
            failures.push(format!(
                "[panic] {what}: validate panicked: {}",
                short(&o.stderr)
            ));
        } else if o.code == Some(2) && !o.stderr.starts_with("error: ") {
            failures.push(format!(
                "[format] {what}: stderr does not start with 'error: ': {}",
                short(&o.stderr)
            ));
        }
        if o.stdout_len != 0 {
            failures.push(format!(
                "[stdout] {what}: validate printed {} bytes on stdout",
                o.stdout_len
            ));
        }
        match &r.lib {
            LibOutcome::Err(_, t) => times.push((*t, format!("{what}, load_profile_str"))),
            LibOutcome::Ok(t) => {
                times.push((*t, format!("{what}, load_profile_str")));
                failures.push(format!("[accepted] {what}: load_profile_str accepted it"));
            }
            LibOutcome::Panicked(p) => failures.push(format!(
                "[panic] {what}: load_profile_str panicked: {}",
                short(p)
            )),
            LibOutcome::Hung => failures.push(format!(
                "[hang] {what}: load_profile_str still running after {HANG_LIMIT:?}"
            )),
            LibOutcome::NotText => {}
        }
    }
    times.sort_by_key(|b| std::cmp::Reverse(b.0));
    // Straight to stderr, past the test harness's capture, so CI logs show it.
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "slowest bad inputs (each should take under 5 s):");
    for (t, what) in times.iter().take(6) {
        let flag = if *t > SLOW { "  <- over 5 s" } else { "" };
        let _ = writeln!(err, "  {:>8.3} s  {what}{flag}", t.as_secs_f64());
    }
    let _ = writeln!(
        err,
        "bad inputs: {} tried, {refused} refused with exit 2",
        ran.len()
    );
    drop(err);
    report("refusal", &failures);
}

/// The error locates the problem: the field's path or `:<line>:` (or, for a
/// file refused before parsing because of its size, says so).
#[test]
fn bad_input_errors_say_where() {
    let mut failures = Vec::new();
    for (i, r) in ran().iter().enumerate() {
        let what = what(i, r);
        let wants = &r.case.cli_wants;
        if r.cli.code == Some(2) && !wants.iter().any(|w| r.cli.stderr.contains(w.as_str())) {
            failures.push(format!(
                "{what}: validate's error names none of {wants:?}: {}",
                short(&r.cli.stderr)
            ));
        }
        let wants = &r.case.lib_wants;
        if let LibOutcome::Err(e, _) = &r.lib {
            if !wants.iter().any(|w| e.contains(w.as_str())) {
                failures.push(format!(
                    "{what}: load_profile_str's error names none of {wants:?}: {}",
                    short(e)
                ));
            }
        }
    }
    report("location", &failures);
}

/// The positive controls: the base profile itself, and the same with CRLF
/// line ends, with a BOM, and with unicode in its free-text description,
/// load (through the CLI and the library).
#[test]
fn valid_profiles_in_odd_encodings_load() {
    let dir = tempfile::tempdir().unwrap();
    let b = base();
    let controls = [
        ("base", b.clone()),
        ("crlf", b.replace('\n', "\r\n")),
        ("crlf-no-final-newline", b.replace('\n', "\r\n").trim_end().to_string()),
        ("bom", format!("\u{feff}{b}")),
        ("bom-crlf", format!("\u{feff}{}", b.replace('\n', "\r\n"))),
        (
            "description-unicode",
            with_value(
                "description",
                &toml_str("\u{05e9}\u{05dc}\u{05d5}\u{05dd} \u{1f600} \u{202e}rtl\u{202c} zero\u{200b}width"),
            )
            .0,
        ),
    ];
    for (i, (tag, text)) in controls.iter().enumerate() {
        let p = nestlab::load_profile_str(text, tag).unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert_eq!(p.name, "base");
        let path = write_case(dir.path(), i, &Case::new(*tag, text.as_bytes(), vec![]));
        let o = run_validate(&path);
        assert_eq!(o.code, Some(0), "{tag}: {}", o.stderr);
        assert!(o.stderr.is_empty(), "{tag}: {}", o.stderr);
    }
    // CRLF does not shift line numbers: the bad field is still on line 3.
    let crlf = with_value("vcpus", "\"4\"").0.replace('\n', "\r\n");
    let e = nestlab::load_profile_str(&crlf, "crlf.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("crlf.toml:3:"), "{e}");
}
