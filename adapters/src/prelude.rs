//! What a stream program needs, in one import: `use dstream_adapters::prelude::*;`.
//!
//! ```no_run
//! use dstream_adapters::prelude::*;
//!
//! let mut ssc = StreamingContext::new(Duration::from_secs(2));
//! let lines = KafkaUtils::create_direct_stream(&mut ssc, KafkaParams::new("localhost:9092"), "lines");
//! lines.map(|r: ConsumerRecord<'_>| r.value.len() as i64).count().print(1);
//! ```

pub use crate::kafka::direct::{OutOfRangePolicy, StartingOffsets};
pub use crate::sources::{socket_text_stream, text_file_stream, text_file_stream_since, SocketOptions};
pub use crate::streaming::{
    BatchCompleted, KafkaParams, KafkaUtils, SaveAsTextFiles, StopHandle, StreamingContext, StreamingError,
    StreamingListener,
};
pub use dstream_core::graph::{ConsumerRecord, GraphBuilder, InputStream, Stream};
pub use dstream_core::sources::Queue;
pub use dstream_core::{
    BatchInfo, DStream, Duration, MalformedPolicy, OutputOrder, State, StateError, StateSpec, Time, TimeoutScan,
};
