//! The front end: profile files in, validated [`crate::model::Profile`]s
//! out.
//!
//! - [`wire`]: the TOML wire structs (`deny_unknown_fields`; their doc
//!   comments are the user reference);
//! - [`parse`]: TOML text -> wire structs, with field paths and line:column
//!   in errors; the shipped profiles;
//! - [`validate`]: wire structs -> `Profile`, every problem collected, each
//!   naming its field.

pub mod parse;
pub mod validate;
pub mod wire;

pub use parse::{load_profile_arg, load_profile_file, load_profile_str, ProfileError, SHIPPED};
