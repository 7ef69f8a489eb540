//! Spark's lab program, line for line: "KEY,VALUE" messages from the topic `avg`, a running average per key
//! with `map_with_state`, printed each batch, checkpointed, resumed after a restart.
//!
//! `cargo run --release --example lab` (a local broker and the lab's generator start if none answers).
#[path = "common/mod.rs"]
mod common;

use dstream_adapters::prelude::*;
use serde::{Deserialize, Serialize};

/// A key's running sum and count.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct SumCount {
    sum: i128,
    count: u64,
}

/// "KEY,VALUE" into (KEY, VALUE); anything else is malformed: counted and reported, never fatal.
fn parse(record: ConsumerRecord<'_>) -> Result<(String, i64), String> {
    let text = std::str::from_utf8(record.value).map_err(|_| "not UTF-8")?;
    let (key, value) = text.split_once(',').ok_or("no comma")?;
    Ok((key.to_string(), value.parse().map_err(|_| format!("{value:?} is not an integer"))?))
}

/// The mapping function: add the value to the key's state and emit its running average.
#[allow(clippy::ptr_arg)] // a mapping function takes `&K`, and the key is a String
fn average(key: &String, value: Option<i64>, state: &mut State<'_, SumCount>) -> Result<(String, f64), StateError> {
    let mut s = state.get_option().copied().unwrap_or_default();
    if let Some(v) = value {
        s = SumCount { sum: s.sum + v as i128, count: s.count + 1 };
        state.update(s)?;
    }
    Ok((key.clone(), s.sum as f64 / s.count as f64))
}

/// The job: parse, then a running average per key.
pub fn averages(messages: &InputStream) -> Stream<impl DStream<Item = (String, f64)>> {
    messages.try_map(parse).map_with_state(StateSpec::function(average))
}

fn main() -> anyhow::Result<()> {
    let args = common::Args::parse();
    let kafka = args.kafka("avg")?;
    let mut ssc = StreamingContext::new(args.batch_interval);
    ssc.checkpoint(&args.checkpoint);
    let params = KafkaParams::new(kafka.brokers()).starting_offsets(args.starting_offsets);
    let messages = KafkaUtils::create_direct_stream(&mut ssc, params.max_rate_per_partition(args.max_rate), "avg");
    averages(&messages).print(args.print);
    args.apply(&mut ssc)?;
    ssc.start()?;
    ssc.await_termination()?;
    Ok(())
}
