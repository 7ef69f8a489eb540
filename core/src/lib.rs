//! dstream-core: Spark Streaming's micro-batch model as a pure, synchronous engine.
//!
//! No sockets, files, threads or system clock: the caller passes time and records in, and takes
//! outputs out. A job is built as Spark's are, from streams on one graph ([`graph::GraphBuilder`]: operators
//! return streams, output operations register on the graph), and runs in an [`Engine`] one batch at a time.
//! See `README.md` at the workspace root for the documented deviations from Spark.
#![warn(missing_docs)]

pub mod checkpoint;
pub mod engine;
pub mod graph;
pub mod jvm;
pub mod key;
pub mod print;
pub mod record;
pub mod sources;
pub mod state;
pub mod stateful;
pub mod stream;
pub mod time;

pub use compact_str::CompactString;
pub use engine::{BatchInfo, BatchReport, Engine, EngineError, OpenBatch, Totals};
pub use key::Key;
pub use record::{OffsetRange, RecordBatch, RecordRef, RecordSource, Run, RunIter, SourceError, RUN_RECORDS};
pub use state::{OutputOrder, State, StateError, StateMap, StateSnapshot, StateSpecOptions, TimeoutScan};
pub use stateful::{StateCodecError, StateVisit, Stateful};
pub use stream::{
    input, BatchContext, ConfigError, DStream, DStreamExt, Graph, Inputs, Job, JobError, Malformed, MalformedPolicy,
    OutputOp, OutputOperation, PartitionLabel, Shared, StateSpec,
};
pub use time::{BatchTimer, Clock, Duration, ManualClock, Time};
