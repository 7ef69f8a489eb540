//! dstream-harness: recorded streams, the replay driver, a test driver, proptest strategies and a reference model.
#![warn(missing_docs)]

pub mod driver;
pub mod model;
#[cfg(feature = "proptest")]
pub mod strategies;
// The recording format, replay and the named jobs live with the binary that writes and plays recordings; they
// are re-exported here where tests have always found them.
pub use dstream_adapters::{jobs, lines, recording, replay, text};
