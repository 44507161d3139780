//! The host side: the libvirt adapter, the only module that imports `virt`.

pub mod libvirt;
