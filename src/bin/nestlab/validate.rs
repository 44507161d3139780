//! `nestlab validate`: check profiles, print only errors.

use crate::common::load_topology;
use crate::exit;

pub fn main(profiles: &[String]) -> u8 {
    let mut code = exit::OK;
    for p in profiles {
        if load_topology(p).is_err() {
            code = exit::INVALID;
        }
    }
    code
}
