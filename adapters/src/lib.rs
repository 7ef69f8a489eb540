//! dstream-adapters: everything that touches the world: the streaming context a program runs its job in, Kafka,
//! checkpoint files, the real clock. The `dstream` command and the lab job built on this library are in the
//! `dstream-cli` package (`adapters/cli`).
//!
//! A complete program, Spark's shape (see [`streaming`]; `adapters/cli/examples/` has the lab, a word count and
//! sessions):
//!
//! ```no_run
//! use dstream_adapters::streaming::{KafkaParams, KafkaUtils, SaveAsTextFiles, StreamingContext};
//! use dstream_core::Duration;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut ssc = StreamingContext::new(Duration::from_secs(1));
//!     ssc.checkpoint("checkpoint");
//!     let lines = KafkaUtils::create_direct_stream(&mut ssc, KafkaParams::new("localhost:9092"), "lines");
//!     let words = lines
//!         .map(|r| String::from_utf8_lossy(r.value).into_owned())
//!         .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>());
//!     let counts = words.map(|w| (w, 1i64)).reduce_by_key(|a, b| a + b);
//!     counts.print(10);
//!     counts.save_as_text_files("out/counts", "txt");
//!     ssc.stop_handle().stop_on_ctrl_c()?;
//!     ssc.start()?;
//!     ssc.await_termination()?;
//!     Ok(())
//! }
//! ```
#![warn(missing_docs)]

pub mod alloc;
pub mod broker;
pub mod checkpoint;
pub mod clock;
pub mod kafka;
pub mod local;
pub mod prelude;
pub mod record;
pub mod recording;
pub mod recovery;
pub mod replay;
pub mod run;
pub mod sources;
pub mod streaming;
pub mod text;
pub mod ui;
