//! `[iommu]`: the model and its options.

use super::*;
use crate::front::wire::IommuFile;

/// The IOMMU of the profile, or none (also when its model is refused: the
/// error stops the run).
pub(super) fn check_iommu(file: Option<&IommuFile>, errs: &mut Errors) -> Option<Iommu> {
    let i = file?;
    let model = match i.model.as_str() {
        "intel" => IommuModel::Intel,
        "virtio" => IommuModel::Virtio,
        "amd" => {
            errs.push("iommu.model", Problem::IommuAmd);
            return None;
        }
        other => {
            errs.push("iommu.model", Problem::IommuModel(other.to_string()));
            return None;
        }
    };
    if model == IommuModel::Intel {
        let iommu = Iommu {
            model,
            intremap: i.intremap.unwrap_or(true),
            caching_mode: i.caching_mode.unwrap_or(true),
            eim: i.eim.unwrap_or(false),
            iotlb: i.iotlb.unwrap_or(false),
        };
        if iommu.eim && !iommu.intremap {
            errs.push("iommu.eim", Problem::EimWithoutIntremap);
        }
        return Some(iommu);
    }
    for (name, given) in [
        ("intremap", i.intremap.is_some()),
        ("caching_mode", i.caching_mode.is_some()),
        ("eim", i.eim.is_some()),
        ("iotlb", i.iotlb.is_some()),
    ] {
        if given {
            errs.push(
                format!("iommu.{name}"),
                Problem::IntelOnly {
                    model: model.name(),
                },
            );
        }
    }
    Some(Iommu {
        model,
        intremap: false,
        caching_mode: false,
        eim: false,
        iotlb: false,
    })
}
