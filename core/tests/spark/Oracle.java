import java.util.*;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.*;
import org.apache.spark.api.java.Optional;
import org.apache.spark.streaming.*;
import org.apache.spark.streaming.api.java.*;
import org.apache.spark.streaming.scheduler.*;
import org.apache.spark.util.ManualClock;
import scala.Tuple2;

// Runs Spark Streaming on its ManualClock over batches read from stdin (one batch per line, words separated by
// spaces, "-" for an empty batch) and prints every output stream's elements per batch.
public class Oracle {
  static void out(JavaDStream<?> s, String name) {
    s.foreachRDD((rdd, time) -> {
      StringBuilder b = new StringBuilder("== " + name + " @ " + time.milliseconds() + "\n");
      for (Object o : rdd.collect()) b.append(o).append('\n');
      System.out.print(b);
    });
  }
  static void outp(JavaPairDStream<?, ?> s, String name) { out(s.toJavaDStream(), name); }

  public static void main(String[] args) throws Exception {
    List<List<String>> batches = new ArrayList<>();
    Scanner sc = new Scanner(System.in);
    while (sc.hasNextLine()) {
      String l = sc.nextLine().trim();
      batches.add(l.equals("-") ? new ArrayList<>() : Arrays.asList(l.split(" +")));
    }
    SparkConf conf = new SparkConf().setMaster("local[2]").setAppName("oracle")
        .set("spark.streaming.clock", "org.apache.spark.util.ManualClock").set("spark.ui.enabled", "false");
    JavaStreamingContext ssc = new JavaStreamingContext(conf, Durations.seconds(1));
    ssc.checkpoint("/tmp/sparkoracle/cp-" + System.nanoTime());
    Queue<JavaRDD<String>> q = new LinkedList<>();
    for (List<String> b : batches) q.add(ssc.sparkContext().parallelize(b, 1));
    JavaDStream<String> words = ssc.queueStream(q, true);
    JavaPairDStream<String, Long> pairs = words.mapToPair(w -> new Tuple2<>(w, 1L));
    String which = args[0];
    if (which.equals("keyed")) {
      outp(pairs.reduceByKey((a, b) -> a + b), "reduce_by_key");
      outp(pairs.reduceByKey((a, b) -> a + b, 3), "reduce_by_key_3");
      outp(words.countByValue(), "count_by_value");
      outp(pairs.updateStateByKey((List<Long> vs, Optional<Long> s) -> {
        long n = s.orElse(0L); for (Long v : vs) n += v; return Optional.of(n); }), "update_state_by_key");
      outp(pairs.updateStateByKey((List<Long> vs, Optional<Long> s) -> {
        long n = s.orElse(0L); for (Long v : vs) n += v; return Optional.of(n); }, 3), "update_state_by_key_3");
      outp(pairs.reduceByKeyAndWindow((a, b) -> a + b, Durations.seconds(2), Durations.seconds(1)), "window");
      outp(pairs.reduceByKeyAndWindow((a, b) -> a + b, (a, b) -> a - b, Durations.seconds(2), Durations.seconds(1)), "window_inv");
      JavaMapWithStateDStream<String, Long, Long, Tuple2<String, Long>> m = pairs.mapWithState(
          StateSpec.function((String k, Optional<Long> v, State<Long> st) -> {
            long n = (st.exists() ? st.get() : 0L) + v.orElse(0L); st.update(n); return new Tuple2<>(k, n); }));
      outp(m.stateSnapshots(), "snapshots");
    } else if (which.equals("longs")) {
      JavaPairDStream<Long, Long> lp = words.mapToPair(w -> new Tuple2<>(Long.parseLong(w), 1L));
      outp(lp.reduceByKey((a, b) -> a + b), "reduce_by_key");
      outp(lp.updateStateByKey((List<Long> vs, Optional<Long> s) -> {
        long n = s.orElse(0L); for (Long v : vs) n += v; return Optional.of(n); }), "update_state_by_key");
    } else if (which.equals("grouped")) {
      // The Scala API, as a Scala program prints it (the Java API would wrap the groups in java.lang.Iterables).
      scala.reflect.ClassTag<String> ks = scala.reflect.ClassTag$.MODULE$.apply(String.class);
      scala.reflect.ClassTag<Long> vs = scala.reflect.ClassTag$.MODULE$.apply(Long.class);
      org.apache.spark.streaming.dstream.PairDStreamFunctions<String, Long> f =
          org.apache.spark.streaming.dstream.DStream.toPairDStreamFunctions(pairs.dstream(), ks, vs, null);
      JavaPairDStream<String, Long> other = pairs.filter(p -> p._1().compareTo("m") < 0).mapValues(v -> v * 10);
      f.groupByKey().print(100);
      f.cogroup(other.dstream(), vs).print(100);
      f.join(other.dstream(), vs).print(100);
      f.leftOuterJoin(other.dstream(), vs).print(100);
      f.fullOuterJoin(other.dstream(), vs).print(100);
      f.groupByKeyAndWindow(Durations.seconds(2), Durations.seconds(1)).print(100);
    } else if (which.equals("misc")) {
      out(words.repartition(3), "repartition_3");
      out(words.repartition(2), "repartition_2");
    } else if (which.equals("timeouts")) {
      // A running count with a 1 s timeout: a key timing out emits (key, -count); timeouts are scanned at state
      // checkpoints, every 10 batches.
      JavaMapWithStateDStream<String, Long, Long, Tuple2<String, Long>> m = pairs.mapWithState(
          StateSpec.function((String k, Optional<Long> v, State<Long> st) -> {
            if (st.isTimingOut()) return new Tuple2<>(k, -st.get());
            long n = (st.exists() ? st.get() : 0L) + v.orElse(0L); st.update(n); return new Tuple2<>(k, n); })
          .timeout(Durations.seconds(1)));
      out(m, "mapped");
      outp(m.stateSnapshots(), "snapshots");
    }
    final int[] done = {0};
    ssc.ssc().addStreamingListener(new StreamingListener() {
      @Override public void onBatchCompleted(StreamingListenerBatchCompleted c) { synchronized (done) { done[0]++; done.notifyAll(); } }
    });
    ssc.start();
    ManualClock clock = (ManualClock) ssc.ssc().scheduler().clock();
    for (int i = 1; i <= batches.size(); i++) {
      clock.advance(1000);
      synchronized (done) { long end = System.currentTimeMillis() + 60000; while (done[0] < i && System.currentTimeMillis() < end) done.wait(1000); }
    }
    ssc.stop(true, false);
  }
}
