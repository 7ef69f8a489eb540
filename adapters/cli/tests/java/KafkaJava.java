// Kafka's own Java client (org.apache.kafka:kafka-clients) for the cross-checks in kafka_java.rs.
//
//   produce ADDR TOPIC CODEC COUNT PARTITIONS IDEMPOTENT
//     Creates TOPIC with PARTITIONS partitions and sends COUNT records compressed with CODEC, keyed (every 11th
//     key null), with headers (none on every 5th record), and a null value on every 97th. Prints one line per
//     acknowledged record: "PARTITION OFFSET VALUE", VALUE being "-" for a null value.
//   consume ADDR TOPIC COUNT PARTITIONS
//     Reads TOPIC's PARTITIONS partitions from the beginning until COUNT records came (30 s at most), then half a
//     second more, and prints one line per record in the order received: "PARTITION OFFSET HEX-VALUE".

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class KafkaJava {
    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "produce" -> produce(args[1], args[2], args[3], Integer.parseInt(args[4]), Integer.parseInt(args[5]),
                    args[6]);
            case "consume" -> consume(args[1], args[2], Integer.parseInt(args[3]), Integer.parseInt(args[4]));
            default -> throw new IllegalArgumentException(args[0]);
        }
    }

    static void produce(String addr, String topic, String codec, int count, int partitions, String idempotent)
            throws Exception {
        Properties a = new Properties();
        a.put("bootstrap.servers", addr);
        try (Admin admin = Admin.create(a)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
        }
        Properties p = new Properties();
        p.put("bootstrap.servers", addr);
        p.put("compression.type", codec);
        p.put("linger.ms", "5");
        p.put("batch.size", "16384");
        p.put("enable.idempotence", idempotent);
        p.put("acks", "all");
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        List<String> values = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            for (int i = 0; i < count; i++) {
                byte[] key = i % 11 == 0 ? null : ("key-" + i).getBytes(StandardCharsets.UTF_8);
                String value = i % 97 == 5 ? null : String.format("j%03d,%d", i % 40, i % 1000 - 300);
                byte[] v = value == null ? null : value.getBytes(StandardCharsets.UTF_8);
                ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, null, key, v);
                if (i % 5 != 0) {
                    r.headers().add(new RecordHeader("trace", ("t" + i).getBytes(StandardCharsets.UTF_8)));
                    r.headers().add(new RecordHeader("empty", null));
                }
                sent.add(producer.send(r));
                values.add(value);
            }
            producer.flush();
        }
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < count; i++) {
            RecordMetadata m = sent.get(i).get();
            String v = values.get(i);
            out.append(m.partition()).append(' ').append(m.offset()).append(' ').append(v == null ? "-" : v)
                    .append('\n');
        }
        System.out.print(out);
    }

    static void consume(String addr, String topic, int count, int partitions) {
        Properties p = new Properties();
        p.put("bootstrap.servers", addr);
        p.put("enable.auto.commit", "false");
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        HexFormat hex = HexFormat.of();
        StringBuilder out = new StringBuilder();
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < partitions; i++) {
                tps.add(new TopicPartition(topic, i));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            int got = 0;
            long deadline = System.nanoTime() + 30_000_000_000L;
            long extra = -1;
            while (true) {
                long now = System.nanoTime();
                if (got >= count && extra < 0) {
                    extra = now + 500_000_000L; // a little longer: nothing beyond what was written
                }
                if (now > deadline || (extra >= 0 && now > extra)) {
                    break;
                }
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) {
                    String v = r.value() == null ? "-" : hex.formatHex(r.value());
                    out.append(r.partition()).append(' ').append(r.offset()).append(' ').append(v).append('\n');
                    got++;
                }
            }
        }
        System.out.print(out);
    }
}
