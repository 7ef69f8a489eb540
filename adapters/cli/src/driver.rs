//! The lab job as the test driver runs it: its mapped output and state per batch, its checkpoint and restore.

use crate::jobs::AnyJob;
use crate::lab::{Avg, LabCheckpoint, LabConfig, LabJob, Output};
use dstream_core::{Duration, Key};
use dstream_harness::driver::{CheckpointJob, Driver, DriverCheckpoint, DriverJob};

impl DriverJob for LabJob {
    type Output = Output;
    type Snapshot = Vec<(Key, Avg)>;
    fn mapped(&self) -> Vec<Output> {
        self.last_output()
    }
    fn snapshot_state(&self) -> Self::Snapshot {
        self.snapshot()
    }
}

impl CheckpointJob for LabJob {
    type Checkpoint = LabCheckpoint;
    fn checkpoint_state(&self) -> LabCheckpoint {
        self.checkpoint()
    }
    fn restore_state(&mut self, cp: LabCheckpoint) {
        // The driver restores checkpoints it took itself, whose keys are unique.
        self.restore(cp).expect("a driver checkpoint restores")
    }
}

/// A job behind `AnyJob` is observed through its printed text only.
impl DriverJob for AnyJob {
    type Output = ();
    type Snapshot = ();
    fn mapped(&self) -> Vec<()> {
        Vec::new()
    }
    fn snapshot_state(&self) {}
}

/// A driver of the lab job with `config`, clock at zero, first batch at `batch_interval`.
///
/// ```
/// use dstream_cli::{driver::lab_driver, lab::LabConfig};
/// use dstream_core::Duration;
/// let mut d = lab_driver(LabConfig::default(), Duration::from_secs(2));
/// d.pipe(0, b"a,10");
/// d.pipe(0, b"a,15");
/// let out = d.advance(1).unwrap();
/// assert_eq!(out[0].time.millis(), 2000);
/// assert_eq!(out[0].mapped[1].1, 12.5);
/// ```
pub fn lab_driver(config: LabConfig, batch_interval: Duration) -> Driver<LabJob> {
    Driver::with_job(LabJob::new(config), batch_interval)
}

/// A lab-job driver continuing from `checkpoint`.
pub fn lab_driver_restore(
    config: LabConfig,
    batch_interval: Duration,
    checkpoint: DriverCheckpoint<LabCheckpoint>,
) -> Driver<LabJob> {
    Driver::restore_job(LabJob::new(config), batch_interval, checkpoint)
}
