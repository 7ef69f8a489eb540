//! The lab job against the harness's independent reference model, on arbitrary streams.

use dstream_cli::lab::{LabConfig, LabJob};
use dstream_cli::model::AverageModel;
use dstream_core::{BatchTimer, Clock, Duration, Engine, ManualClock, RecordBatch};
use dstream_harness::strategies;
use proptest::prelude::*;

/// A message from the harness's strategy (multi-byte keys, extreme values, malformed messages), plus values with
/// an explicit `+` sign, which the parser accepts.
fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => strategies::message(),
        1 => ("[a-z]", 0i64..100).prop_map(|(k, v)| format!("{k},+{v}").into_bytes()),
    ]
}

type Messages = Vec<(i32, Vec<u8>)>;
type Outputs = Vec<(String, f64)>;

/// Messages with a partition each, and the sizes of consecutive batches.
fn stream() -> impl Strategy<Value = (Messages, Vec<usize>, usize)> {
    (prop::collection::vec((0i32..4, message()), 0..120), prop::collection::vec(0usize..30, 1..20), 1usize..5)
}

/// Runs the lab job; batch sizes repeat cyclically until every message is in a batch (0 = an empty batch).
fn run(msgs: &[(i32, Vec<u8>)], sizes: &[usize], partitions: usize) -> (Outputs, Outputs) {
    let mut config = LabConfig { print: None, ..LabConfig::default() };
    config.state.num_partitions = partitions;
    let mut clock = ManualClock::default();
    let interval = Duration::from_secs(2);
    let mut engine = Engine::new(LabJob::new(config), BatchTimer::first_start(clock.now(), interval));
    let mut offsets = [0i64; 4];
    let mut outputs = Vec::new();
    let mut i = 0;
    let mut batch = RecordBatch::new();
    for &size in sizes.iter().cycle() {
        if i >= msgs.len() {
            break;
        }
        batch.clear();
        for (p, m) in &msgs[i..(i + size).min(msgs.len())] {
            batch.push(*p, offsets[*p as usize], 0, None, m);
            offsets[*p as usize] += 1;
        }
        i += size;
        clock.advance(interval);
        let t = engine.poll_due(clock.now()).unwrap();
        engine.run_batch(t, &mut batch, &clock).unwrap();
        outputs.extend(engine.job().last_output().iter().map(|(k, v)| (k.as_str().to_string(), *v)));
    }
    let finals = engine.job().averages().into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect();
    (outputs, finals)
}

/// What the model says: messages in (batch, partition, offset) order.
fn model_outputs(msgs: &[(i32, Vec<u8>)], sizes: &[usize]) -> (Outputs, Outputs) {
    let mut m = AverageModel::new();
    let mut out = Vec::new();
    let mut i = 0;
    for &size in sizes.iter().cycle() {
        if i >= msgs.len() {
            break;
        }
        let mut chunk: Vec<&(i32, Vec<u8>)> = msgs[i..(i + size).min(msgs.len())].iter().collect();
        chunk.sort_by_key(|(p, _)| *p); // stable: offsets stay in arrival order within a partition
        for (_, msg) in chunk {
            out.extend(m.feed(msg));
        }
        i += size;
    }
    (out, m.averages())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn running_average_after_every_record_equals_the_model((msgs, sizes, parts) in stream()) {
        prop_assume!(sizes.iter().any(|&s| s > 0));
        let got = run(&msgs, &sizes, parts);
        let want = model_outputs(&msgs, &sizes);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn final_state_does_not_depend_on_batching_or_partitions(
        msgs in prop::collection::vec(message(), 0..150),
        a in prop::collection::vec(1usize..40, 1..10),
        b in prop::collection::vec(1usize..40, 1..10),
        pa in 1usize..6, pb in 1usize..6,
    ) {
        let on0: Vec<(i32, Vec<u8>)> = msgs.into_iter().map(|m| (0, m)).collect();
        prop_assert_eq!(run(&on0, &a, pa).1, run(&on0, &b, pb).1);
    }
}
