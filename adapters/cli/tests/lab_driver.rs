//! The lab job in the test driver: batches, offsets, restore and malformed records.

use dstream_cli::driver::{lab_driver, lab_driver_restore};
use dstream_cli::lab::{Avg, LabConfig};
use dstream_core::{Duration, Key, OffsetRange, Time};
use dstream_harness::driver::DriverCheckpoint;

#[test]
fn records_go_into_the_next_batch_with_per_partition_offsets() {
    let mut d = lab_driver(LabConfig::default(), Duration(1000));
    assert_eq!(d.pipe(1, b"a,1"), 0);
    assert_eq!(d.pipe(0, b"b,2"), 0);
    assert_eq!(d.pipe(1, b"a,3"), 1);
    let out = d.advance(2).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].time, Time(1000));
    assert_eq!(out[1].time, Time(2000));
    // Processing order is (partition, offset): b first, then a's two records.
    assert_eq!(out[0].mapped, vec![(Key::new("b"), 2.0), (Key::new("a"), 1.0), (Key::new("a"), 2.0)]);
    assert_eq!(
        out[0].frame.ranges,
        vec![OffsetRange { partition: 0, from: 0, until: 1 }, OffsetRange { partition: 1, from: 0, until: 2 }]
    );
    assert!(out[1].mapped.is_empty());
    assert_eq!(
        out[1].frame.ranges,
        vec![OffsetRange { partition: 0, from: 1, until: 1 }, OffsetRange { partition: 1, from: 2, until: 2 }]
    );
    assert_eq!(
        out[1].printed,
        "-------------------------------------------\nTime: 2000 ms\n-------------------------------------------\n\n"
    );
}

#[test]
fn restore_continues_the_grid_offsets_and_state() {
    let mut d = lab_driver(LabConfig::default(), Duration(1000));
    d.pipe(0, b"a,10");
    d.advance(1).unwrap();
    let cp = DriverCheckpoint::from_bytes(&d.checkpoint().to_bytes()).unwrap();
    assert_eq!(cp.time, Time(1000));
    assert_eq!(cp.next_offsets, vec![1]);
    let mut r = lab_driver_restore(LabConfig::default(), Duration(1000), cp);
    assert_eq!(r.pipe(0, b"a,20"), 1);
    let out = r.advance(1).unwrap();
    assert_eq!(out[0].time, Time(2000));
    assert_eq!(out[0].mapped, vec![(Key::new("a"), 15.0)]);
    assert_eq!(out[0].snapshot, Some(vec![(Key::new("a"), Avg::new(30, 2))]));
    assert_eq!(r.snapshot(), vec![(Key::new("a"), Avg::new(30, 2))]);
}

#[test]
fn malformed_records_are_reported_with_their_position() {
    let mut d = lab_driver(LabConfig::default(), Duration(1000));
    d.run_batches(&[vec!["a,1", "oops"]]).unwrap();
    d.pipe(0, b"b,x");
    let out = d.advance(1).unwrap();
    assert_eq!(out[0].malformed.len(), 1);
    assert_eq!((out[0].malformed[0].partition, out[0].malformed[0].offset), (0, 2));
}
