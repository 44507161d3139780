//! nestlab: declarative NUMA / PCIe / IOMMU virtual hosts on libvirt,
//! booted and verified from the inside.
//!
//! A TOML profile goes through these stages, each in its own module:
//!
//! | stage    | module        | in -> out                                              |
//! |----------|---------------|--------------------------------------------------------|
//! | front    | [`front`]     | TOML text -> wire structs -> validated [`model::Profile`] |
//! | resolve  | [`resolve`]   | profile -> [`model::Topology`] (indexes, buses, addresses) |
//! | xml      | [`xml`]       | topology -> [`xml::Domain`] -> XML                     |
//! | expect   | [`expect`]    | topology -> what the guest must show                   |
//! | guest    | [`guest`]     | what boots: the agent, its console protocol, the appliance |
//! | host     | [`host`]      | the libvirt adapter                                    |
//! | runner   | [`runner`]    | one boot: start, console, phases, destroy               |
//! | capture  | [`capture`]   | the capture table: files, commands, scopes, parsers    |
//! | observe  | [`observe`]   | captured command output -> typed observations          |
//! | verify   | [`verify`]    | expected + observed -> checks                          |
//! | report   | [`report`]    | checks -> human / JSON / JUnit                         |
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
//! let boot = nestlab::xml::BootSpec::placeholder();
//! let xml = nestlab::xml::render(&topology, nestlab::model::Accel::Tcg, &boot).to_xml().unwrap();
//! assert!(xml.contains("<model type=\"e1000e\"/>"));
//! assert!(xml.contains("pcie-expander-bus"));
//! ```
#![warn(missing_docs)]

pub mod capture;
pub mod expect;
pub mod front;
pub mod guest;
pub mod host;
pub mod model;
pub mod observe;
pub mod report;
pub mod resolve;
pub mod runner;
pub mod verify;
pub mod xml;

#[cfg(test)]
pub(crate) mod test_support;

pub use front::{load_profile_arg, load_profile_file, load_profile_str};
