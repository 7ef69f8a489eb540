//! dstream-harness: recorded streams, the replay driver, a test driver, proptest strategies and a reference model.
#![warn(missing_docs)]

pub mod driver;
pub mod jobs;
pub mod lines;
pub mod model;
pub mod recording;
pub mod replay;
#[cfg(feature = "proptest")]
pub mod strategies;
pub mod text;
