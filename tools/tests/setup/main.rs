//! `nvme-setup` end to end against fake `/sys`, `/proc` and `/dev` trees.

mod bind;
mod cli;
mod diagnose;
mod fake;
mod hugepages;
mod status;
