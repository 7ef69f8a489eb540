//! Sessions: "USER,..." messages (the lab's messages will do: the key is the user), a session per user kept with
//! `map_with_state` and its own state struct, closed after 3 s without events (a timeout); each closed session is
//! printed and saved as `(user,events,length ms)` in `OUT/sessions-TIME.txt`.
//!
//! `cargo run --example sessions -- --brokers H:P --batch-interval 500ms` (topic `avg`).
#[path = "common/mod.rs"]
mod common;

use dstream_adapters::prelude::*;
use serde::{Deserialize, Serialize};

/// One user's open session.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    events: u64,
    first: Time,
    last: Time,
}

/// Counts a user's events; when the user has been idle longer than the timeout, emits the closed session.
#[allow(clippy::ptr_arg)] // a mapping function takes `&K`, and the key is a String
fn track(
    time: Time,
    user: &String,
    event: Option<()>,
    state: &mut State<'_, Session>,
) -> Result<Option<(String, u64, i64)>, StateError> {
    if event.is_none() {
        // Timing out: the session closes.
        let s = state.get()?;
        return Ok(Some((user.clone(), s.events, (s.last - s.first).millis())));
    }
    let mut s = state.get_option().cloned().unwrap_or(Session { events: 0, first: time, last: time });
    s.events += 1;
    s.last = time;
    state.update(s)?;
    Ok(None)
}

/// The job: each record's user (the text before the first comma), tracked with a 3 s idle timeout; the stream
/// holds the sessions that closed.
pub fn closed_sessions(records: &InputStream) -> Stream<impl DStream<Item = (String, u64, i64)>> {
    let events = records.try_map(|r| {
        let text = std::str::from_utf8(r.value).map_err(|_| "not UTF-8")?;
        let user = text.split(',').next().filter(|u| !u.is_empty()).ok_or("no user")?;
        Ok::<_, &str>((user.to_string(), ()))
    });
    events.map_with_state(StateSpec::full(track).timeout(Duration::from_secs(3)))
}

fn main() -> anyhow::Result<()> {
    let args = common::Args::parse();
    let kafka = args.kafka("avg")?;
    let mut ssc = StreamingContext::new(args.batch_interval);
    ssc.app_name("sessions").checkpoint(&args.checkpoint);
    let params = KafkaParams::new(kafka.brokers()).starting_offsets(args.starting_offsets);
    let events = KafkaUtils::create_direct_stream(&mut ssc, params.max_rate_per_partition(args.max_rate), "avg");
    let closed = closed_sessions(&events);
    closed.print(args.print);
    closed.save_as_text_files(args.out.join("sessions"), "txt");

    args.apply(&mut ssc)?;
    ssc.start()?;
    ssc.await_termination()?;
    Ok(())
}
