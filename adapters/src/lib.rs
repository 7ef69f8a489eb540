//! dstream-adapters: everything that touches the world: Kafka, checkpoint files, the real clock, the CLI.
#![warn(missing_docs)]

pub mod alloc;
pub mod broker;
pub mod checkpoint;
pub mod clock;
pub mod generate;
pub mod kafka;
pub mod record;
pub mod recovery;
pub mod run;
pub mod streaming;
pub mod ui;
