//! Deleting what a repartition topic no longer needs, as Kafka Streams
//! purges its repartition topics after a commit: a task restores by
//! replaying its partition from the committed low-water offset, so nothing
//! below it is ever read again. Without this the topics grow until
//! retention (a week) removes records.
//!
//! Only the partition's owner purges, right after its checkpoint
//! committed, and only below the low-water offset it committed: whoever
//! owns the partition next starts at or above it. At most once every
//! `TRIBUTARY_REPARTITION_PURGE_MS` (default 30 s, Kafka Streams'
//! `repartition.purge.interval.ms`). A failed purge (no `Delete` ACL, a
//! broker away) is logged and tried again at the next interval; it never
//! stops the pipeline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::connector::kafka::checkpoint::Meta;

/// Overrides how often repartition topics are purged (ms).
const PURGE_ENV: &str = "TRIBUTARY_REPARTITION_PURGE_MS";
/// How often they are purged by default.
const PURGE_EVERY: Duration = Duration::from_secs(30);
/// How long one purge may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The purge interval: [`PURGE_ENV`], else 30 s.
fn interval() -> Duration {
    crate::runtime::env_millis(PURGE_ENV, PURGE_EVERY)
}

/// Where each repartition partition of a checkpoint may be cut: below its
/// committed low-water offset. `committed`: (topic, partition, offset,
/// metadata) as the checkpoint committed them; `repartition`: whether a
/// topic is a repartition topic. Later entries for a partition win.
#[must_use]
pub fn cut_points(
    committed: &[(String, i32, i64, Meta)],
    repartition: impl Fn(&str) -> bool,
) -> BTreeMap<(String, i32), i64> {
    committed
        .iter()
        .filter(|(topic, ..)| repartition(topic))
        .filter_map(|(topic, partition, offset, meta)| {
            let below = meta.low.min(*offset);
            (below > 0).then(|| ((topic.clone(), *partition), below))
        })
        .collect()
}

/// Deletes records below the cut points, at most once an interval.
pub struct Purger {
    admin: AdminClient<DefaultClientContext>,
    rt: tokio::runtime::Runtime,
    every: Duration,
    last: Option<Instant>,
    /// What was cut last, so an unchanged point is not sent again.
    done: BTreeMap<(String, i32), i64>,
}

impl Purger {
    /// A purger with its own admin client on `config`.
    ///
    /// # Errors
    /// When the client or its runtime cannot start.
    pub fn new(config: &ClientConfig) -> Result<Self, String> {
        Ok(Self {
            admin: config
                .create()
                .map_err(|e| format!("creating an admin client: {e}"))?,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("starting a runtime for the admin client: {e}"))?,
            every: interval(),
            last: None,
            done: BTreeMap::new(),
        })
    }

    /// After a checkpoint committed: deletes below each new cut point when
    /// the interval has passed.
    pub fn after_commit(&mut self, cuts: BTreeMap<(String, i32), i64>) {
        if self.last.is_some_and(|t| t.elapsed() < self.every) {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), below) in &cuts {
            let key = (topic.clone(), *partition);
            if self.done.get(&key).is_some_and(|d| d >= below) {
                continue;
            }
            // An offset the list refuses is tried again next interval.
            let _ = tpl
                .add_partition(topic, *partition)
                .set_offset(Offset::Offset(*below));
        }
        self.last = Some(Instant::now());
        if tpl.count() == 0 {
            return;
        }
        let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
        match self.rt.block_on(self.admin.delete_records(&tpl, &opts)) {
            Ok(result) => {
                for e in result.elements() {
                    match e.error() {
                        Ok(()) => {
                            let key = (e.topic().to_owned(), e.partition());
                            if let Some(below) = cuts.get(&key) {
                                self.done.insert(key, *below);
                            }
                        }
                        Err(err) => tracing::warn!(
                            topic = e.topic(),
                            partition = e.partition(),
                            error = %err,
                            "purging a repartition partition failed; retrying at the next interval (it needs the Delete ACL)"
                        ),
                    }
                }
                tracing::debug!(partitions = result.count(), "repartition topics purged");
            }
            Err(err) => {
                tracing::warn!(error = %err, "purging repartition topics failed; retrying at the next interval")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(topic: &str, partition: i32, offset: i64, low: i64) -> (String, i32, i64, Meta) {
        (
            topic.to_owned(),
            partition,
            offset,
            Meta {
                low,
                wm: 0,
                snap: None,
            },
        )
    }

    #[test]
    fn only_repartition_partitions_are_cut_and_only_below_their_low_water() {
        let committed = [
            at("clicks", 0, 900, 800),
            at("g-step1-repartition", 0, 500, 420),
            at("g-step1-repartition", 1, 300, 300),
            at("g-step1-repartition", 2, 0, 0),
        ];
        let cuts = cut_points(&committed, |t| t.ends_with("-repartition"));
        assert_eq!(
            cuts,
            BTreeMap::from([
                (("g-step1-repartition".to_owned(), 0), 420),
                (("g-step1-repartition".to_owned(), 1), 300),
            ]),
            "the source topic is never cut, nor a partition with nothing below its low water"
        );
    }

    #[test]
    fn a_low_water_above_the_offset_cuts_at_the_offset() {
        let cuts = cut_points(&[at("r", 0, 10, 50)], |_| true);
        assert_eq!(cuts.get(&("r".to_owned(), 0)), Some(&10));
    }
}
