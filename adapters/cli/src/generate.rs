//! The lab's generator (SPARK-SEMANTICS §9): `"<letter>,<n>"`, letter uniform over a..z, n uniform over 0..25,
//! no key, 100 messages a second by default; deterministic given a seed.

use dstream_adapters::clock::SystemClock;
use dstream_adapters::kafka::records::{encode_batch, Codec};
use dstream_adapters::kafka::{Acks, Client, KafkaError};
use dstream_adapters::local::{LocalError, LocalKafka};
use dstream_core::Clock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed, reproducible PRNG.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number uniform over `0..n` (Lemire's multiply-shift with rejection, so exactly uniform).
    pub fn below(&mut self, n: u32) -> u32 {
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() >> 32) * n as u64;
            if (m as u32) >= threshold {
                return (m >> 32) as u32;
            }
        }
    }
}

/// The lab's messages as a reproducible sequence.
#[derive(Debug, Clone)]
pub struct LabMessages {
    rng: SplitMix64,
}

impl LabMessages {
    /// The sequence for `seed`.
    pub fn new(seed: u64) -> Self {
        LabMessages { rng: SplitMix64::new(seed) }
    }
    /// Writes the next message into `buf` (cleared first): a letter, a comma, a number 0..=25.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) {
        buf.clear();
        let letter = b'a' + self.rng.below(26) as u8;
        let n = self.rng.below(26) as u8;
        buf.push(letter);
        buf.push(b',');
        if n >= 10 {
            buf.push(b'0' + n / 10);
        }
        buf.push(b'0' + n % 10);
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Topic (created if missing).
    pub topic: String,
    /// Messages per second; 0 = as fast as possible.
    pub rate: u64,
    /// Messages to send; `None` = until stopped.
    pub count: Option<u64>,
    /// PRNG seed.
    pub seed: u64,
    /// Partitions of the topic if it is created; message i goes to partition i mod partitions.
    pub partitions: i32,
    /// Compression of produced batches.
    pub codec: Codec,
    /// Acknowledgements to wait for.
    pub acks: Acks,
}

/// Produces lab messages until `count` is reached or `stop` is set; returns how many were sent.
pub fn generate(client: &mut Client, opts: &GenerateOptions, stop: &AtomicBool) -> Result<u64, KafkaError> {
    let partitions = match client.partitions(&opts.topic) {
        Ok(p) => p,
        Err(KafkaError::UnknownTopic { .. }) => {
            client.create_topic(&opts.topic, opts.partitions.max(1), 1)?;
            client.partitions(&opts.topic)?
        }
        Err(e) => return Err(e),
    };
    let p = partitions.len() as u64;
    let mut msgs = LabMessages::new(opts.seed);
    let start = Instant::now();
    let mut sent = 0u64;
    const CHUNK: u64 = 10_000;
    // Per partition: the values of the chunk being built.
    let mut bufs: Vec<Vec<Vec<u8>>> = vec![Vec::new(); partitions.len()];
    let mut line = Vec::with_capacity(8);
    loop {
        if stop.load(Ordering::Relaxed) || opts.count.is_some_and(|c| sent >= c) {
            return Ok(sent);
        }
        let due =
            if opts.rate == 0 { sent + CHUNK } else { (start.elapsed().as_secs_f64() * opts.rate as f64) as u64 + 1 };
        let due = due.min(opts.count.unwrap_or(u64::MAX)).min(sent + CHUNK);
        if due > sent {
            for b in bufs.iter_mut() {
                b.clear();
            }
            for i in sent..due {
                msgs.next_into(&mut line);
                bufs[(i % p) as usize].push(line.clone());
            }
            let now_ms = SystemClock.now().0;
            for (k, values) in bufs.iter().enumerate() {
                if values.is_empty() {
                    continue;
                }
                let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
                let batch = encode_batch(&refs, now_ms, opts.codec).map_err(|e| KafkaError::Protocol {
                    addr: String::new(),
                    api: "Produce",
                    reason: e.to_string(),
                })?;
                client.produce(&opts.topic, partitions[k], batch, opts.acks)?;
            }
            sent = due;
        } else {
            // Sleep until the next message is due, in short slices so that a stop is noticed.
            let next_at = Duration::from_secs_f64(sent as f64 / opts.rate as f64);
            let wait = next_at.saturating_sub(start.elapsed()).min(Duration::from_millis(50));
            std::thread::sleep(wait.max(Duration::from_millis(1)));
        }
    }
}

/// `brokers` if given (nothing is started); else the default broker if it answers; else a tansu started here,
/// `topic` created on it and the lab's generator writing 100 messages a second to it (see [`LocalKafka`]).
pub fn local_lab_kafka(brokers: Option<&str>, topic: &str) -> Result<LocalKafka, LocalError> {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let opts = GenerateOptions {
        topic: topic.to_string(),
        rate: 100,
        count: None,
        seed,
        partitions: 1,
        codec: Codec::None,
        acks: Acks::Leader,
    };
    LocalKafka::provision(brokers, topic, "the lab generator at 100 messages/s", move |client, stop| {
        generate(client, &opts, stop).map(|_| ())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_reference_values() {
        // First outputs for seed 0, from the algorithm's published reference implementation.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn messages_cover_the_lab_alphabet_uniformly() {
        let mut m = LabMessages::new(7);
        let mut letters = [0u32; 26];
        let mut values = [0u32; 26];
        let mut buf = vec![];
        for _ in 0..260_000 {
            m.next_into(&mut buf);
            let text = std::str::from_utf8(&buf).unwrap();
            let (k, v) = text.split_once(',').unwrap();
            let v: i64 = v.parse().unwrap();
            letters[(k.as_bytes()[0] - b'a') as usize] += 1;
            values[v as usize] += 1;
        }
        // 10,000 expected each; 5 sigma is about 490.
        for c in letters.iter().chain(values.iter()) {
            assert!((9_500..10_500).contains(c), "{letters:?} {values:?}");
        }
    }
}
