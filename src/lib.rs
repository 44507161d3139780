//! nestlab: declarative NUMA / PCIe / IOMMU virtual hosts on libvirt,
//! booted and verified from the inside.
//!
//! A TOML profile goes through these stages, each in its own module:
//!
//! | stage    | module        | in -> out                                         |
//! |----------|---------------|---------------------------------------------------|
//! | parse    | [`parse`]     | TOML text -> wire structs ([`profile`])           |
//! | validate | [`validate`]  | wire structs -> [`validate::Profile`]             |
//! | resolve  | [`resolve`]   | profile -> [`resolve::Topology`] (indexes, buses) |
//! | render   | [`render`]    | topology -> [`domain::Domain`] -> XML             |
//! | expect   | [`expect`]    | topology -> what the guest must show              |
//! | boot     | [`boot`]      | domain + appliance -> console capture (libvirt)   |
//! | probe    | [`probe`]     | in-guest capture format, init, console framing    |
//! | observe  | [`observe`]   | captured command output -> typed observations     |
//! | verify   | [`verify`]    | expected + observed -> checks                     |
//! | report   | [`report`]    | checks -> human / JSON / JUnit                    |
//!
//! ```
//! let profile = nestlab::load_profile_str(r#"
//!     name = "doc"
//!     vcpus = 2
//!     [[node]]
//!     cpus = "0-1"
//!     memory = "1 GiB"
//!     [[nic]]
//!     model = "e1000e"
//!     node = 0
//! "#, "doc.toml").unwrap();
//! let topology = nestlab::resolve::resolve(&profile).unwrap();
//! let boot = nestlab::render::BootSpec::placeholder();
//! let xml = nestlab::render::render(&topology, nestlab::render::Accel::Tcg, &boot).to_xml().unwrap();
//! assert!(xml.contains("<model type=\"e1000e\"/>"));
//! assert!(xml.contains("pcie-expander-bus"));
//! ```
#![warn(missing_docs)]

pub mod appliance;
pub mod boot;
pub mod domain;
pub mod expect;
pub mod libvirt;
pub mod observe;
pub mod parse;
pub mod probe;
pub mod profile;
pub mod render;
pub mod report;
pub mod resolve;
pub mod types;
pub mod validate;
pub mod verify;

pub use parse::{load_profile_file, load_profile_str};
