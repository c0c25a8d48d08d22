//! Writes Avro click events to a Kafka topic, for trying `format: {type:
//! avro, schema: ...}` pipelines by hand:
//!
//! ```sh
//! cargo run -p tributary-processor --example avro_to_kafka -- 127.0.0.1:29092 clicks 1000
//! ```
//!
//! Each event is a plain binary datum of [`SCHEMA`] (users `u0`..`u9`, one
//! event every 10 ms of event time); one payload that is not Avro follows,
//! to show the dead-letter path.

use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Value;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// The writer schema the pipeline's `format.schema` must repeat.
const SCHEMA: &str = r#"{"type": "record", "name": "Click", "fields": [{"name": "userId", "type": "string"}, {"name": "ts", "type": "long"}]}"#;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, topic, count] = args.as_slice() else {
        anyhow::bail!("usage: avro_to_kafka BROKERS TOPIC COUNT");
    };
    let count: i64 = count.parse()?;
    let schema = Schema::parse_str(SCHEMA)?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    for i in 0..count {
        let user = format!("u{}", i % 10);
        let datum = apache_avro::to_avro_datum(
            &schema,
            Value::Record(vec![
                ("userId".into(), Value::String(user.clone())),
                ("ts".into(), Value::Long(1_700_000_000_000 + i * 10)),
            ]),
        )?;
        producer
            .send(BaseRecord::to(topic).key(&user).payload(&datum))
            .map_err(|(e, _)| e)?;
        producer.poll(Duration::ZERO);
    }
    producer
        .send(BaseRecord::<str, [u8]>::to(topic).payload(b"\xff\xfenot avro"))
        .map_err(|(e, _)| e)?;
    producer.flush(Duration::from_secs(30))?;
    println!("{SCHEMA}");
    Ok(())
}
