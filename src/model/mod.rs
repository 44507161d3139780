//! The model: the truth every stage reads. TOML profiles and libvirt XML
//! are serialisations of it.
//!
//! - [`types`]: newtypes for the things of the domain (`Bdf`, `BusNr`,
//!   `NodeId`, `CpuSet`, `MacAddr`, `Bytes`, `PciId`);
//! - [`profile`]: the validated profile (what the user asked for, defaults
//!   filled in);
//! - [`topology`]: the resolved topology (every number decided);
//! - [`accel`]: how guests are executed;
//! - [`workload`]: the user's commands and the host folders they share.

pub mod accel;
pub mod profile;
pub mod topology;
pub mod types;
pub mod workload;

pub use accel::{Accel, AccelChoice};
pub use profile::*;
pub use topology::*;
pub use types::*;
pub use workload::{Command, Share, ShareArg, ShareMode, Workload};
