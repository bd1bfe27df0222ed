//! The one integration-test binary (each extra file in tests/ would re-link the AWS SDK).

mod alarms;
mod capacity;
mod collisions;
mod compute;
mod crash;
pub mod daemon;
mod data;
mod events;
pub mod faults;
mod harness;
mod images;
mod import;
mod invalid_specs;
mod load_balancing;
mod network;
mod page;
mod secrets;
mod security;
mod sqs;
mod writers;
