//! `nvme-identify`: the controller and namespace report.

pub mod human;
pub mod model;
