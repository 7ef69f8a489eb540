//! Proptest strategies for the lab job's configuration.

use crate::lab::LabConfig;
use dstream_core::{Duration, MalformedPolicy, OutputOrder, StateSpecOptions, TimeoutScan};
use proptest::prelude::*;

/// A lab configuration: print 0-12, 1-4 state partitions, no timeout or one of 1-6 intervals under either
/// scan policy, checkpoint interval default or 1-3 intervals, either output order; malformed records skipped.
pub fn lab_config(interval: Duration) -> impl Strategy<Value = LabConfig> {
    (
        0usize..=12,
        1usize..=4,
        prop::option::of(1i64..=6),
        prop_oneof![Just(TimeoutScan::SparkCompatible), Just(TimeoutScan::EveryBatch)],
        prop::option::of(1i64..=3),
        prop_oneof![3 => Just(OutputOrder::Arrival), 1 => Just(OutputOrder::SparkPartitions)],
    )
        .prop_map(move |(print, parts, timeout, scan, cpi, order)| LabConfig {
            print: Some(print),
            malformed: MalformedPolicy::Skip,
            state: StateSpecOptions {
                num_partitions: parts,
                timeout: timeout.map(|k| interval * k),
                checkpoint_interval: cpi.map(|k| interval * k),
                timeout_scan: scan,
                output_order: order,
            },
        })
}
