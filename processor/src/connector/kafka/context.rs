//! The consumer's context: librdkafka calls it back inside `poll`, on the
//! engine thread. Rebalances lock the engine to restore assigned
//! partitions and checkpoint revoked ones before they move; statistics feed
//! the lag gauge.

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;

use super::engine::{Engine, kafka_err};

/// The consumer's context: the engine, and the partitions' last stable
/// offsets from librdkafka's statistics (for the lag gauge).
pub struct Ctx {
    /// The engine; locked by the poll loop between polls and by callbacks.
    pub engine: Mutex<Engine>,
    /// Last stable offset per (topic, partition), from librdkafka statistics.
    pub stable: Mutex<HashMap<(String, i32), i64>>,
}

impl Ctx {
    /// A context around `engine`.
    #[must_use]
    pub fn new(engine: Engine) -> Self {
        Self {
            engine: Mutex::new(engine),
            stable: Mutex::new(HashMap::new()),
        }
    }
}

/// The consumer type of the engine.
pub type KafkaConsumer = BaseConsumer<Ctx>;

impl ClientContext for Ctx {
    fn stats(&self, statistics: Statistics) {
        let Ok(mut stable) = self.stable.lock() else {
            return;
        };
        for (name, topic) in statistics.topics {
            for (&p, part) in &topic.partitions {
                if p >= 0 {
                    stable.insert((name.clone(), p), part.ls_offset);
                }
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let Ok(mut engine) = self.engine.lock() else {
            return;
        };
        engine.note_rebalance();
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                engine.assign(consumer, tpl).and_then(|with_offsets| {
                    if cooperative {
                        consumer.incremental_assign(&with_offsets)
                    } else {
                        consumer.assign(&with_offsets)
                    }
                    .map_err(kafka_err)
                })
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                let r = engine.revoke(consumer, tpl);
                let un = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                r.and(un.map_err(kafka_err))
            }
            other => {
                tracing::warn!(error = ?other, "rebalance error");
                Ok(())
            }
        };
        if let Err(e) = result {
            engine.fail(e);
        }
    }
}
