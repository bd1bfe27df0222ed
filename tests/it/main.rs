//! The one integration-test binary (each extra file in tests/ would re-link the AWS SDK).

mod capacity;
mod collisions;
mod compute;
mod crash;
mod daemon;
mod data;
pub mod faults;
mod harness;
mod images;
mod import;
mod invalid_specs;
mod network;
mod security;
mod sqs;
