//! dstream-harness: recorded streams, the replay driver, a test driver, proptest strategies and a reference model.
#![warn(missing_docs)]

pub mod lines;
pub mod model;
