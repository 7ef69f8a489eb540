//! dstream-cli: the `dstream` command and the lab job, an app built on dstream's public API.
//!
//! The libraries (`dstream-core`, `dstream-adapters`, `dstream-harness`) know no job; this package holds the
//! lab's (`"KEY,VALUE"` messages, a running average per key with `mapWithState`, printed as Spark does), the jobs
//! a recording can name ([`jobs`]), the plain-text replay ([`lines`]), the lab's generator ([`generate`]) and the `dstream` binary that runs them.
//!
//! ```
//! use dstream_cli::lab::{LabConfig, LabJob};
//! use dstream_core::{BatchTimer, Duration, Engine, ManualClock, RecordBatch, Time};
//!
//! let timer = BatchTimer::first_start(Time(0), Duration::from_secs(2));
//! let mut engine = Engine::new(LabJob::new(LabConfig::default()), timer);
//! let mut batch = RecordBatch::new();
//! batch.push(0, 0, 0, None, b"a,10");
//! batch.push(0, 1, 0, None, b"a,15");
//! let report = engine.run_batch(Time(2000), &mut batch, &ManualClock::new(Time(2000))).unwrap();
//! assert!(report.printed.ends_with("(a,10.0)\n(a,12.5)\n\n"));
//! ```
#![warn(missing_docs)]

pub mod check;
#[cfg(feature = "driver")]
pub mod driver;
pub mod generate;
pub mod jobs;
pub mod lab;
pub mod lines;
#[cfg(feature = "driver")]
pub mod model;
#[cfg(feature = "proptest")]
pub mod strategies;
