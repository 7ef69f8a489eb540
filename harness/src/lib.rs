//! dstream-harness: recorded streams, the replay driver, a test driver and proptest strategies.
#![warn(missing_docs)]

pub mod driver;
#[cfg(feature = "proptest")]
pub mod strategies;
// The recording format and replay live with the streaming context that writes and plays recordings; they are
// re-exported here where tests have always found them.
pub use dstream_adapters::{recording, replay, text};
