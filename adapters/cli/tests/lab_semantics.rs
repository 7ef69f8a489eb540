//! The lab job against Spark's own output, where its configuration changes the order Spark prints in.

#[test]
fn lab_spark_order_with_timeouts_prints_as_spark() {
    // The smallest case, from Spark 4.3 under local[2]: lab, 2 state partitions, timeout 1 s, state
    // checkpoint every 3 s, input b,1 c,1 | (empty) | a,1 d,1. Batch 3 prints partition 0 (d's data, then b timing
    // out, average 1.0) then partition 1 (a's data, then c timing out).
    let mut config = dstream_cli::lab::LabConfig::default();
    config.state.timeout = Some(dstream_core::Duration(1000));
    config.state.checkpoint_interval = Some(dstream_core::Duration(3000));
    config.state.output_order = dstream_core::OutputOrder::SparkPartitions;
    let job = dstream_cli::lab::LabJob::new(config);
    let interval = dstream_core::Duration(1000);
    let mut engine =
        dstream_core::Engine::new(job, dstream_core::BatchTimer::first_start(dstream_core::Time(0), interval));
    let batches: [&[&str]; 3] = [&["b,1", "c,1"], &[], &["a,1", "d,1"]];
    let mut last = String::new();
    for (i, values) in batches.iter().enumerate() {
        let mut b = dstream_core::RecordBatch::new();
        for (j, v) in values.iter().enumerate() {
            b.push(0, (i * 10 + j) as i64, 0, None, v.as_bytes());
        }
        let t = dstream_core::Time((i as i64 + 1) * 1000);
        last = engine.run_batch(t, &mut b, &dstream_core::ManualClock::new(t)).unwrap().printed;
    }
    let rule = "-------------------------------------------";
    assert_eq!(last, format!("{rule}\nTime: 3000 ms\n{rule}\n(d,1.0)\n(b,1.0)\n(a,1.0)\n(c,1.0)\n\n"));
}
