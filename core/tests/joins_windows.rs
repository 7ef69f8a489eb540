//! Property tests for the cogroup, joins and windows against plain models written from Spark's definitions
//! (PairRDDFunctions.cogroup/join, ReducedWindowedDStream), and the same results whatever parts a batch
//! arrives in.

mod common;
use common::*;
use dstream_core::{BatchTimer, DStream, DStreamExt, Duration, Engine, Graph, ManualClock, RecordBatch, Time};
use proptest::prelude::*;
use std::collections::BTreeMap;

type Batches = Vec<Vec<(bool, u8, i64)>>; // (left side, key a..d, value)

fn batches() -> impl Strategy<Value = Batches> {
    prop::collection::vec(prop::collection::vec((any::<bool>(), 0u8..4, -3i64..4), 0..8), 1..10)
}

fn text(rec: &(bool, u8, i64)) -> String {
    format!("{}{}:{}", if rec.0 { 'L' } else { 'R' }, (b'a' + rec.1) as char, rec.2)
}

fn side(side: char) -> impl DStream<Item = (String, i64)> {
    pairs().filter(move |(k, _)| k.starts_with(side)).map(|(k, v)| (k[1..].to_string(), v))
}

/// Runs `graph` over `input`, each batch fed in parts that end at the given cut points (mod the batch's length).
fn run_in_parts(graph: Graph, input: &Batches, cuts: &[usize]) {
    let interval = Duration(1000);
    let mut engine = Engine::new(graph, BatchTimer::first_start(Time(0), interval));
    let mut offset = 0;
    for (i, batch) in input.iter().enumerate() {
        let t = Time((i as i64 + 1) * 1000);
        let clock = ManualClock::new(t);
        let mut open = engine.begin_batch(t, &clock).unwrap();
        let cut = if batch.is_empty() { 0 } else { cuts.get(i).copied().unwrap_or(0) % (batch.len() + 1) };
        for part in [&batch[..cut], &batch[cut..]] {
            let mut b = RecordBatch::new();
            for rec in part {
                b.push(0, offset, 0, None, text(rec).as_bytes());
                offset += 1;
            }
            engine.feed(&mut open, &mut b).unwrap();
        }
        engine.finish_batch(open, &clock).unwrap();
    }
}

type Groups = BTreeMap<String, (Vec<i64>, Vec<i64>)>;

/// Spark's cogroup of one batch: every key of either side with its values in each, in arrival order.
fn model_cogroup(batch: &[(bool, u8, i64)]) -> Groups {
    let mut g = Groups::new();
    for &(left, k, v) in batch {
        let e = g.entry(((b'a' + k) as char).to_string()).or_default();
        if left {
            e.0.push(v)
        } else {
            e.1.push(v)
        }
    }
    g
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn cogroup_and_joins_match_the_model_in_any_parts(input in batches(), cuts in prop::collection::vec(0usize..9, 10)) {
        let (co, co_sink) = collector::<(String, (Vec<i64>, Vec<i64>))>();
        let (jn, jn_sink) = collector::<(String, (i64, i64))>();
        let (fo, fo_sink) = collector::<(String, (Option<i64>, Option<i64>))>();
        let g = Graph::new()
            .output(side('L').cogroup(side('R')).map(unbuffer).foreach_batch(co_sink))
            .output(side('L').join(side('R')).foreach_batch(jn_sink))
            .output(side('L').full_outer_join(side('R')).foreach_batch(fo_sink));
        run_in_parts(g, &input, &cuts);
        let (co1, co1_sink) = collector::<(String, (Vec<i64>, Vec<i64>))>();
        run_in_parts(Graph::new().output(side('L').cogroup(side('R')).map(unbuffer).foreach_batch(co1_sink)), &input, &[]);
        // Exactly the same output, order included, whatever the parts.
        prop_assert_eq!(co.borrow().clone(), co1.borrow().clone());
        for (i, batch) in input.iter().enumerate() {
            let want = model_cogroup(batch);
            let got: Groups = co.borrow()[i].1.iter().cloned().collect();
            prop_assert_eq!(got.len(), co.borrow()[i].1.len(), "a key twice");
            prop_assert_eq!(&got, &want);
            // join: for v <- vs; w <- ws; fullOuterJoin adds (v, None) / (None, w) for one-sided keys.
            let mut want_join = Vec::new();
            let mut want_full = Vec::new();
            for (k, (vs, ws)) in &want {
                for v in vs {
                    for w in ws {
                        want_join.push((k.clone(), (*v, *w)));
                        want_full.push((k.clone(), (Some(*v), Some(*w))));
                    }
                }
                if ws.is_empty() {
                    want_full.extend(vs.iter().map(|v| (k.clone(), (Some(*v), None))));
                }
                if vs.is_empty() {
                    want_full.extend(ws.iter().map(|w| (k.clone(), (None, Some(*w)))));
                }
            }
            let mut got_join = jn.borrow()[i].1.clone();
            got_join.sort();
            want_join.sort();
            prop_assert_eq!(got_join, want_join);
            let mut got_full = fo.borrow()[i].1.clone();
            got_full.sort();
            want_full.sort();
            prop_assert_eq!(got_full, want_full);
        }
    }

    #[test]
    fn windowed_sums_match_the_model(
        input in batches(),
        length in 1i64..5,
        slide in 1i64..4,
        cuts in prop::collection::vec(0usize..9, 10),
    ) {
        // At T = k * slide. Without an inverse: every key's sum over the batches in (T - length, T], keys with
        // values there only. With one (ReducedWindowedDStream, no filter): the batches leaving are those in
        // (T - slide - length, T - length], those entering in (T - slide, T]; a key with a previous value gets
        // previous - leaving + entering, one without gets the entering values alone (Spark ignores the leaving
        // ones then), so every key that entered stays. (With a slide longer than the window, the first window
        // thus also counts the batches before it, as Spark does.) count_by_window is that rule on one key.
        let (l, s) = (Duration(length * 1000), Duration(slide * 1000));
        let (plain, plain_sink) = collector::<(String, i64)>();
        let (inv, inv_sink) = collector::<(String, i64)>();
        let (cnt, cnt_sink) = collector::<i64>();
        let all = || pairs().map(|(k, v)| (k[1..].to_string(), v));
        let g = Graph::new()
            .output(all().reduce_by_key_and_window(|a, b| a + b, l, s).foreach_batch(plain_sink))
            .output(
                all()
                    .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, l, s, None::<fn(&(String, i64)) -> bool>)
                    .foreach_batch(inv_sink),
            )
            .output(all().count_by_window(l, s).foreach_batch(cnt_sink));
        run_in_parts(g, &input, &cuts);
        // Per-key sums (and element count, under key "") over the batches in (from, to].
        let sums = |from: i64, to: i64| {
            let mut m: BTreeMap<String, i64> = BTreeMap::new();
            for b in (from + 1).max(1)..=to.min(input.len() as i64) {
                for &(_, key, v) in &input[(b - 1) as usize] {
                    *m.entry(((b'a' + key) as char).to_string()).or_default() += v;
                    *m.entry(String::new()).or_default() += 1;
                }
            }
            m
        };
        let mut window: BTreeMap<String, i64> = BTreeMap::new();
        let mut k = 0;
        for t in 1..=input.len() as i64 {
            if t % slide != 0 {
                continue;
            }
            let mut truth = sums(t - length, t);
            truth.remove("");
            let (left, entered) = (sums(t - slide - length, t - length), sums(t - slide, t));
            let mut next = BTreeMap::new();
            for key in window.keys().chain(entered.keys()).cloned().collect::<std::collections::BTreeSet<_>>() {
                let v = match window.get(&key) {
                    Some(p) => p - left.get(&key).copied().unwrap_or(0) + entered.get(&key).copied().unwrap_or(0),
                    None => entered[&key],
                };
                next.insert(key, v);
            }
            window = next;
            prop_assert_eq!(plain.borrow()[k].0, t * 1000);
            let mut got = plain.borrow()[k].1.clone();
            got.sort();
            prop_assert_eq!(got, truth.into_iter().collect::<Vec<_>>());
            let want_inv: Vec<(String, i64)> = window.iter().filter(|(k, _)| !k.is_empty()).map(|(k, v)| (k.clone(), *v)).collect();
            prop_assert_eq!(inv.borrow()[k].1.clone(), want_inv);
            prop_assert_eq!(cnt.borrow()[k].1.clone(), window.get("").map(|c| vec![*c]).unwrap_or_default());
            k += 1;
        }
        prop_assert_eq!(plain.borrow().len(), k);
    }
}
