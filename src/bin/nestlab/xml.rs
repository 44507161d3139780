//! `nestlab xml`: the domain XML of a profile.

use std::io::Write;

use nestlab::xml::render::{render, BootSpec};

use crate::args::XmlArgs;
use crate::common::{load_topology, print_error};
use crate::exit;

pub fn main(a: XmlArgs) -> u8 {
    let t = match load_topology(&a.profile) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let mut boot = BootSpec::placeholder();
    if let Some(k) = a.kernel {
        boot.kernel = k;
    }
    if let Some(i) = a.initrd {
        boot.initrd = i;
    }
    match render(&t, a.accel, &boot).to_xml() {
        Ok(xml) => {
            let _ = std::io::stdout().write_all(xml.as_bytes());
            exit::OK
        }
        Err(e) => {
            print_error(&e);
            exit::INVALID
        }
    }
}
