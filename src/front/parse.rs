//! Parse stage: profile text (TOML) -> wire structs -> validated profile.
//!
//! Errors name the field by its path (`node[1].cpus`) and, for syntax and
//! type errors, the line and column.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::front::validate::{self, ValidationErrors};
use crate::front::wire::ProfileFile;
use crate::model::Profile;

/// Profiles larger than this are refused before parsing (a profile is a few
/// hundred bytes; a huge file is a mistake, not a topology).
pub const MAX_PROFILE_BYTES: u64 = 256 * 1024;

/// The profiles shipped with nestlab, embedded in the binary: (name, TOML).
pub const SHIPPED: &[(&str, &str)] = &[
    ("reference", include_str!("../../profiles/reference.toml")),
    ("minimal", include_str!("../../profiles/minimal.toml")),
    ("two-socket", include_str!("../../profiles/two-socket.toml")),
    ("sriov", include_str!("../../profiles/sriov.toml")),
    ("large", include_str!("../../profiles/large.toml")),
    ("nova-pf-vf", include_str!("../../profiles/nova-pf-vf.toml")),
    ("cern", include_str!("../../profiles/cern.toml")),
    ("hmat", include_str!("../../profiles/hmat.toml")),
    (
        "virtio-iommu",
        include_str!("../../profiles/virtio-iommu.toml"),
    ),
    ("pinned", include_str!("../../profiles/pinned.toml")),
];

/// A syntax or type error in the TOML, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the text came from (file path or profile name).
    pub origin: String,
    /// Dotted path of the field (`node[1].cpus`), when known.
    pub field: Option<String>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("cannot read profile {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The argument is neither a file nor a shipped profile.
    #[error("no profile '{0}': not a file, and not a shipped profile (see `nestlab profiles`)")]
    NotFound(String),
    /// The file is too large to be a profile.
    #[error("{path}: {size} bytes is too large for a profile (limit {MAX_PROFILE_BYTES} bytes)")]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Not valid UTF-8.
    #[error("{path}:{line}:{column}: not UTF-8 text (byte 0x{byte:02x})")]
    NotText {
        /// The path.
        path: String,
        /// 1-based line of the first bad byte.
        line: usize,
        /// 1-based column (in characters) of the first bad byte.
        column: usize,
        /// The bad byte.
        byte: u8,
    },
    /// TOML syntax or a field of the wrong type or name.
    #[error("{0}")]
    Syntax(SyntaxError),
    /// Semantically invalid.
    #[error("{origin}: {errors}")]
    Invalid {
        /// Where the text came from.
        origin: String,
        /// Every problem found.
        errors: ValidationErrors,
    },
}

/// Parses profile text into wire structs. `origin` names the source in errors.
///
/// # Errors
/// [`ProfileError::Syntax`] for TOML syntax errors, unknown fields and wrong types.
pub fn parse_str(text: &str, origin: &str) -> Result<ProfileFile, ProfileError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize::<_, ProfileFile>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = match inner.span() {
            Some(span) => {
                let (l, c) = line_col(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        let field = if path.is_empty() || path == "." {
            None
        } else {
            Some(path)
        };
        ProfileError::Syntax(SyntaxError {
            origin: origin.to_string(),
            field,
            line,
            column,
            message: plain_words(inner.message().trim()).replace('\n', "; "),
        })
    })
}

/// serde names the Rust type it wanted (`expected u32`); a profile's
/// author should read what to write instead. A number written as a string
/// (`vcpus = "8"`) gets a hint to drop the quotes.
fn plain_words(message: &str) -> String {
    const TYPES: &[(&str, &str)] = &[
        ("u8", "a whole number from 0 to 255"),
        ("u16", "a whole number from 0 to 65535"),
        ("u32", "a whole number from 0 to 4294967295"),
        ("u64", "a whole number from 0 to 18446744073709551615"),
        ("usize", "a whole number of 0 or more"),
        ("i32", "a whole number"),
        ("i64", "a whole number"),
        ("f32", "a number"),
        ("f64", "a number"),
    ];
    let mut out = message.to_string();
    let mut numeric = false;
    for (rust, words) in TYPES {
        let needle = format!("expected {rust}");
        if let Some(at) = out.find(&needle) {
            let end = at + needle.len();
            // Only the whole word: `expected u32`, not `expected u32x`.
            if !out[end..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                out.replace_range(at..end, &format!("expected {words}"));
                numeric = true;
            }
        }
    }
    if numeric {
        if let Some(quoted) = out
            .strip_prefix("invalid type: string \"")
            .and_then(|r| r.split('"').next())
        {
            if quoted.trim().parse::<f64>().is_ok() {
                out.push_str(" (write numbers without quotes)");
            }
        }
    }
    out
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut col = 1;
    for (i, ch) in text.char_indices() {
        if i >= offset {
            break;
        }
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

/// Parses and validates profile text.
///
/// # Errors
/// [`ProfileError::Syntax`] or [`ProfileError::Invalid`].
pub fn load_profile_str(text: &str, origin: &str) -> Result<Profile, ProfileError> {
    load_profile_in(text, origin, Path::new("."))
}

/// A change to a profile's wire structs before validation (the command
/// line's overrides: `--guest`, `--skip-nested`, the `-- CMD` workload).
pub type Edit<'a> = &'a dyn Fn(&mut ProfileFile);

/// [`load_profile_str`] with relative share folders relative to `base`.
fn load_profile_in(text: &str, origin: &str, base: &Path) -> Result<Profile, ProfileError> {
    load_profile_edited(text, origin, base, &|_| {})
}

fn load_profile_edited(
    text: &str,
    origin: &str,
    base: &Path,
    edit: Edit,
) -> Result<Profile, ProfileError> {
    let mut file = parse_str(text, origin)?;
    edit(&mut file);
    validate::validate_in(&file, text, base).map_err(|errors| ProfileError::Invalid {
        origin: origin.to_string(),
        errors,
    })
}

/// Reads, parses and validates a profile file.
///
/// # Errors
/// Any [`ProfileError`].
pub fn load_profile_file(path: &Path) -> Result<Profile, ProfileError> {
    load_profile_file_edited(path, &|_| {})
}

fn load_profile_file_edited(path: &Path, edit: Edit) -> Result<Profile, ProfileError> {
    let read_err = |source| ProfileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.is_dir() {
        return Err(read_err(std::io::Error::other("is a directory")));
    }
    if meta.len() > MAX_PROFILE_BYTES {
        return Err(ProfileError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let good = e.utf8_error().valid_up_to();
        let prefix = std::str::from_utf8(&bytes[..good]).unwrap_or("");
        let (line, column) = line_col(prefix, prefix.len());
        ProfileError::NotText {
            path: path.display().to_string(),
            line,
            column,
            byte: bytes.get(good).copied().unwrap_or(0),
        }
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    load_profile_edited(&text, &path.display().to_string(), base, edit)
}

/// Loads a profile named on the command line: a path to a file when one
/// exists (or the argument looks like a path), else a shipped profile name.
///
/// # Errors
/// [`ProfileError::NotFound`] when it is neither, or any load error.
pub fn load_profile_arg(arg: &str) -> Result<Profile, ProfileError> {
    load_profile_arg_edited(arg, &|_| {})
}

/// [`load_profile_arg`], with `edit` applied to the wire structs before
/// validation (so that what it adds is validated and placed like the rest).
///
/// # Errors
/// [`ProfileError::NotFound`] when it is neither, or any load error.
pub fn load_profile_arg_edited(arg: &str, edit: Edit) -> Result<Profile, ProfileError> {
    let path = Path::new(arg);
    if path.exists() || arg.contains('/') || arg.ends_with(".toml") {
        return load_profile_file_edited(path, edit);
    }
    match SHIPPED.iter().find(|(name, _)| *name == arg) {
        Some((name, text)) => {
            load_profile_edited(text, &format!("profiles/{name}.toml"), Path::new("."), edit)
        }
        None => Err(ProfileError::NotFound(arg.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_load() {
        for (name, text) in SHIPPED {
            let p = load_profile_str(text, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&p.name, name);
        }
    }

    #[test]
    fn type_errors_name_no_rust_types() {
        assert_eq!(
            plain_words("invalid type: string \"8\", expected u32"),
            "invalid type: string \"8\", expected a whole number from 0 to 4294967295 (write numbers without quotes)"
        );
        assert_eq!(
            plain_words("invalid value: integer `300`, expected u8"),
            "invalid value: integer `300`, expected a whole number from 0 to 255"
        );
        assert_eq!(
            plain_words("invalid type: string \"two\", expected u32"),
            "invalid type: string \"two\", expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            plain_words("invalid type: integer `1`, expected a boolean"),
            "invalid type: integer `1`, expected a boolean"
        );
        let e = parse_str("name = \"x\"\nvcpus = -2\n", "t.toml").unwrap_err();
        assert!(!e.to_string().contains("u32"), "{e}");
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = parse_str("name = \"x\"\nvcpus = = 2\n", "t.toml").unwrap_err();
        let ProfileError::Syntax(s) = e else {
            panic!("{e:?}")
        };
        assert_eq!(s.line, Some(2));
    }

    #[test]
    fn unknown_field_is_named() {
        let e = parse_str(
            "name = \"x\"\nvcpus = 2\n[[node]]\ncpus = \"0-1\"\nmemory = \"1 GiB\"\ncpu = 3\n",
            "t",
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("node[0]"), "{msg}");
        assert!(msg.contains("unknown field `cpu`"), "{msg}");
    }

    #[test]
    fn wrong_type_names_field() {
        let e = parse_str("name = \"x\"\nvcpus = \"two\"\n", "t").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("vcpus"), "{msg}");
        assert!(msg.contains(":2:"), "{msg}");
    }
}
