package dev.tributary.peer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * Tributary's Kafka benchmark job in the Kafka Streams DSL: drop scrolls,
 * compute cents, count and sum per user in 1 s tumbling event-time windows
 * (grace 0, final results only), write JSON results keyed by user.
 *
 * <p>Args: bootstrap input output applicationId guarantee(exactlyOnce|atLeastOnce) commitMs
 */
public final class TumblingPeer {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** Event time from the JSON field {@code ts} (epoch ms), as the pipeline's eventTime. */
    public static final class EventTime implements TimestampExtractor {
        @Override
        public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
            try {
                return JSON.readTree((String) record.value()).path("ts").asLong(partitionTime);
            } catch (Exception e) {
                return partitionTime;
            }
        }
    }

    /** Count and sum of cents of one window. */
    record Agg(long events, double cents) {
        Agg add(double c) {
            return new Agg(events + 1, cents + c);
        }
    }

    static final Serde<Agg> AGG = Serdes.serdeFrom(
            (Serializer<Agg>) (topic, a) -> ByteBuffer.allocate(16).putLong(a.events()).putDouble(a.cents()).array(),
            (Deserializer<Agg>) (topic, b) -> {
                ByteBuffer buf = ByteBuffer.wrap(b);
                return new Agg(buf.getLong(), buf.getDouble());
            });

    public static void main(String[] args) throws Exception {
        if (args.length != 6) {
            System.err.println("usage: TumblingPeer bootstrap input output applicationId exactlyOnce|atLeastOnce commitMs");
            System.exit(2);
        }
        Properties p = new Properties();
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, args[3]);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
                args[4].equals("exactlyOnce") ? StreamsConfig.EXACTLY_ONCE_V2 : StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(args[5]));
        p.put(StreamsConfig.STATE_DIR_CONFIG, System.getProperty("java.io.tmpdir") + "/kstreams-" + args[3]);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        // A single-node test bed: one replica of the changelog topics.
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);

        StreamsBuilder b = new StreamsBuilder();
        b.stream(args[1], Consumed.with(Serdes.String(), Serdes.String()).withTimestampExtractor(new EventTime()))
                .mapValues(v -> {
                    try {
                        return JSON.readTree(v);
                    } catch (Exception e) {
                        return null;
                    }
                })
                .filter((k, v) -> v != null && !"scroll".equals(v.path("action").asText()))
                .mapValues(v -> v.path("amount").asDouble() * 100.0)
                .groupByKey(org.apache.kafka.streams.kstream.Grouped.with(Serdes.String(), Serdes.Double()))
                .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofSeconds(1), Duration.ZERO))
                .aggregate(() -> new Agg(0, 0.0), (k, cents, agg) -> agg.add(cents),
                        Materialized.with(Serdes.String(), AGG))
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
                .toStream()
                .map((w, agg) -> {
                    ObjectNode out = JSON.createObjectNode();
                    out.put("userId", w.key());
                    out.put("windowStart", w.window().start());
                    out.put("windowEnd", w.window().end());
                    out.put("events", agg.events());
                    out.put("cents", agg.cents());
                    return KeyValue.pair(w.key(), out.toString());
                })
                .to(args[2], Produced.with(Serdes.String(), Serdes.String()));

        KafkaStreams streams = new KafkaStreams(b.build(), p);
        CountDownLatch done = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(20));
            done.countDown();
        }));
        streams.start();
        done.await();
    }
}
