//! `[nested]`: the devices assigned to a nested guest.

use super::*;

pub(super) fn check_nested(assign: &[String], nics: &[Nic], errs: &mut Errors) -> Vec<DeviceRef> {
    let mut refs: Vec<DeviceRef> = Vec::new();
    for (i, id) in assign.iter().enumerate() {
        let field = format!("nested.assign[{i}]");
        let parsed = parse_device_ref(id);
        let Some(r) = parsed else {
            errs.push(field, Problem::BadDeviceRef(id.clone()));
            continue;
        };
        let Some(nic) = nics.get(r.nic) else {
            errs.push(
                field,
                Problem::UnknownDevice {
                    id: id.clone(),
                    last: nics.len().saturating_sub(1),
                },
            );
            continue;
        };
        if let Some(vf) = r.vf {
            if vf >= nic.vfs {
                errs.push(
                    field,
                    Problem::UnknownVf {
                        id: id.clone(),
                        vf,
                        nic: nic.id.clone(),
                        vfs: nic.vfs,
                    },
                );
                continue;
            }
        }
        if refs.contains(&r) {
            errs.push(field, Problem::DuplicateDevice(id.clone()));
            continue;
        }
        if let Some(other) = refs
            .iter()
            .find(|o| o.nic == r.nic && o.vf.is_some() != r.vf.is_some())
        {
            let (pf, vf) = if r.vf.is_some() {
                (other.to_string(), r.to_string())
            } else {
                (r.to_string(), other.to_string())
            };
            errs.push(field, Problem::PfAndVf { pf, vf });
            continue;
        }
        refs.push(r);
    }
    refs
}

/// Reads `nicN` or `nicN.vfK`.
pub fn parse_device_ref(id: &str) -> Option<DeviceRef> {
    let num = |s: &str| -> Option<u32> {
        if s.is_empty()
            || s.len() > 4
            || !s.bytes().all(|b| b.is_ascii_digit())
            || (s.len() > 1 && s.starts_with('0'))
        {
            None
        } else {
            s.parse().ok()
        }
    };
    let rest = id.strip_prefix("nic")?;
    let (n, vf) = match rest.split_once('.') {
        Some((n, v)) => (n, Some(num(v.strip_prefix("vf")?)?)),
        None => (rest, None),
    };
    Some(DeviceRef {
        nic: num(n)? as usize,
        vf,
    })
}
