//! libvirt domain XML: a typed model ([`domain`]) serialised with
//! quick-xml + serde, and the render stage ([`render`]) that fills it from
//! a resolved topology. Nothing here decides a number.

pub mod domain;
pub mod render;

pub use domain::Domain;
pub use render::{render, BootSpec, DiskImage};
