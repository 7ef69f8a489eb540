//! Word count, per batch and over a sliding window: lines of text from a topic, split into words, counted with
//! `reduce_by_key` each batch and with `reduce_by_key_and_window` (window 6 s, slide 2 s, with an inverse, so
//! each window is the previous one plus what entered minus what left). Both are printed and saved, one file per
//! batch: `OUT/counts-TIME.txt` and `OUT/windowed-TIME.txt`.
//!
//! `cargo run --example word_count -- --brokers H:P --batch-interval 1s` (topic `lines`; `--topics A,B` reads
//! several).
#[path = "common/mod.rs"]
mod common;

use dstream_adapters::prelude::*;

/// The job: words counted per batch, and over a window of 6 s sliding by 2 s.
#[allow(clippy::type_complexity)]
pub fn word_counts(
    lines: &InputStream,
) -> (Stream<impl DStream<Item = (String, i64)>>, Stream<impl DStream<Item = (String, i64)>>) {
    let lines = lines.map(|r| String::from_utf8_lossy(r.value).into_owned());
    let words = lines.flat_map(|line| line.split_whitespace().map(str::to_string).collect::<Vec<_>>());
    let pairs = words.map(|w| (w, 1i64));
    let counts = pairs.reduce_by_key(|a, b| a + b);
    let windowed = pairs.reduce_by_key_and_window_inv(
        |a, b| a + b,
        |a, b| a - b,
        Duration::from_secs(6),
        Duration::from_secs(2),
        Some(|kv: &(String, i64)| kv.1 != 0),
    );
    (counts, windowed)
}

fn main() -> anyhow::Result<()> {
    let args = common::Args::parse();
    let kafka = args.kafka("lines")?;
    let mut ssc = StreamingContext::new(args.batch_interval);
    ssc.app_name("word_count").checkpoint(&args.checkpoint);
    let params = KafkaParams::new(kafka.brokers()).starting_offsets(args.starting_offsets);
    let params = params.max_rate_per_partition(args.max_rate);
    // `--topics A,B`: one stream of several topics (Spark's `Subscribe(topics)`).
    let lines = KafkaUtils::create_direct_stream_of(&mut ssc, params, &args.topics("lines"));
    let (counts, windowed) = word_counts(&lines);
    counts.print(args.print);
    counts.save_as_text_files(args.out.join("counts"), "txt");
    windowed.print(args.print);
    windowed.save_as_text_files(args.out.join("windowed"), "txt");

    args.apply(&mut ssc)?;
    ssc.start()?;
    ssc.await_termination()?;
    Ok(())
}
