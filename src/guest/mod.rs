//! What boots inside the virtual host and speaks the console protocol.
//!
//! - [`protocol`]: the console protocol (markers, framing, compressed
//!   payloads) and its Rust reader;
//! - [`agent`]: the sh agent that runs the captures (and the nested step)
//!   and prints them in that protocol, and the PID-1 wrapper around it;
//! - [`appliance`]: the probe appliance (kernel + initramfs) built from
//!   this machine's files.

pub mod agent;
pub mod appliance;
pub mod protocol;
