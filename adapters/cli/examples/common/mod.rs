//! The few command-line settings the examples share: where Kafka is, where checkpoints and output files go.
#![allow(dead_code)]

use dstream_adapters::kafka::direct::StartingOffsets;
use dstream_adapters::local::LocalKafka;
use dstream_adapters::streaming::StreamingContext;
use dstream_core::Duration;
use std::path::PathBuf;

/// `--brokers H:P` (default: a local broker, started if none answers), `--checkpoint DIR` (default
/// `checkpoint`), `--out DIR` (default `out`), `--batch-interval D` (default 2s), `--batches N` (default: run
/// until Ctrl-C), `--print N` (default 10), `--max-rate-per-partition N` (default: unlimited), `--earliest`
/// (start at the log's beginning rather than its end), `--record FILE` (also record every batch), `--replay FILE`
/// (run over a recording instead of Kafka), `--topics A,B` (read these topics instead of the example's own, as one
/// stream).
pub struct Args {
    pub brokers: Option<String>,
    pub checkpoint: PathBuf,
    pub out: PathBuf,
    pub batch_interval: Duration,
    pub batches: Option<u64>,
    pub print: usize,
    pub max_rate: u64,
    pub starting_offsets: StartingOffsets,
    pub record: Option<PathBuf>,
    pub replay: Option<PathBuf>,
    pub topics: Option<Vec<String>>,
}

impl Args {
    pub fn parse() -> Args {
        let mut a = Args {
            brokers: None,
            checkpoint: "checkpoint".into(),
            out: "out".into(),
            batch_interval: Duration::from_secs(2),
            batches: None,
            print: 10,
            max_rate: 0,
            starting_offsets: StartingOffsets::Latest,
            record: None,
            replay: None,
            topics: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().unwrap_or_else(|| fail(&format!("{flag} needs a value")));
            match flag.as_str() {
                "--brokers" => a.brokers = Some(value()),
                "--checkpoint" => a.checkpoint = value().into(),
                "--out" => a.out = value().into(),
                "--batch-interval" => a.batch_interval = value().parse().unwrap_or_else(|e| fail(&e)),
                "--batches" => a.batches = Some(value().parse().unwrap_or_else(|e| fail(&e))),
                "--print" => a.print = value().parse().unwrap_or_else(|e| fail(&e)),
                "--max-rate-per-partition" => a.max_rate = value().parse().unwrap_or_else(|e| fail(&e)),
                "--earliest" => a.starting_offsets = StartingOffsets::Earliest,
                "--record" => a.record = Some(value().into()),
                "--replay" => a.replay = Some(value().into()),
                "--topics" => a.topics = Some(value().split(',').map(str::to_string).collect()),
                other => fail(&format!("unknown flag {other}")),
            }
        }
        a
    }
}

impl Args {
    /// The topics to read: `--topics`, else the example's own `topic`.
    pub fn topics<'a>(&'a self, topic: &'a str) -> Vec<&'a str> {
        self.topics.as_ref().map_or_else(|| vec![topic], |t| t.iter().map(String::as_str).collect())
    }

    /// The broker to read `topic` from: `--brokers`, else a local one (started with the lab's generator if none
    /// answers); none when replaying.
    pub fn kafka(&self, topic: &str) -> anyhow::Result<LocalKafka> {
        match (&self.replay, &self.brokers) {
            (Some(_), _) => Ok(LocalKafka::at("none:0")),
            (None, b) => Ok(dstream_cli::generate::local_lab_kafka(b.as_deref(), topic)?),
        }
    }

    /// Applies what is not part of the program itself: the batch limit, recording or replay, Ctrl-C.
    pub fn apply(&self, ssc: &mut StreamingContext) -> anyhow::Result<()> {
        if let Some(n) = self.batches {
            ssc.stop_after_batches(n);
        }
        if let Some(p) = &self.record {
            ssc.record_to(p);
        }
        if let Some(p) = &self.replay {
            ssc.replay_from(p);
        }
        ssc.stop_handle().stop_on_ctrl_c()?;
        Ok(())
    }
}

fn fail(msg: &dyn std::fmt::Display) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2)
}
