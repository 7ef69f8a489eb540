//! dstream-adapters: everything that touches the world: Kafka, checkpoint files, the real clock, the CLI.
#![warn(missing_docs)]

pub mod checkpoint;
pub mod clock;
pub mod recovery;
