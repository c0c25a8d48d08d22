//! The stages of a pipeline as the engine runs them, and setting them up
//! at start: topics created, writers keyed, a join's `with` topic.

use std::sync::Arc;

use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;

use crate::expr::Expr;
use crate::sink::SinkError;

use super::super::checkpoint::Meta;
use super::super::sink::SharedProducer;
use super::admin::{ensure_topic, partition_count};
use super::purge::{Purger, cut_points};
use super::shuffle::Shuffle;

/// Sets up the repartition topics of `spec` (consumer group `group`):
/// creates each topic with as many partitions as the largest source topic
/// has, and a writer into it through `producer`. One stage when `spec`
/// needs no repartition.
///
/// # Errors
/// When a topic cannot be created or a key does not compile.
pub fn stages(
    spec: &tributary_crds::StreamPipelineSpec,
    group: &str,
    admin: &ClientConfig,
    producer: impl Fn() -> Result<SharedProducer, String>,
    max_bytes: usize,
) -> Result<Stages, String> {
    let cuts = spec.repartitions();
    if cuts.is_empty() {
        return Ok(Stages::new(spec.steps.len(), Vec::new()));
    }
    let Some(src) = &spec.source.kafka else {
        return Ok(Stages::new(spec.steps.len(), Vec::new()));
    };
    let client: AdminClient<DefaultClientContext> = admin
        .create()
        .map_err(|e| format!("creating an admin client: {e}"))?;
    let mut source_ids = Vec::new();
    let mut widest = 1;
    for t in &src.topics {
        let n = partition_count(client.inner(), t)?;
        source_ids.extend(ids(t, n));
        widest = widest.max(n);
    }
    let env = crate::expr::env();
    let producer = producer()?;
    let mut upstream = source_ids;
    let mut out = Vec::with_capacity(cuts.len());
    for c in cuts {
        let topic = c.topic(group);
        let partitions = ensure_topic(admin, &topic, widest)?;
        let key = c
            .key
            .iter()
            .map(|e| Expr::compile(e, &env))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("spec.steps[{}]: the key does not compile: {e}", c.at))?;
        let step = spec.steps[c.at].display_name(c.at);
        tracing::info!(%topic, partitions, step = %step, key = ?c.key, "re-keying through a repartition topic");
        let mut writers = upstream;
        let side = match spec.steps[c.at].join.as_ref() {
            Some(join) => {
                let with = side_input(
                    spec, join, &client, &topic, partitions, &producer, max_bytes, &step,
                )?;
                writers.extend(ids(
                    &with.topic,
                    partition_count(client.inner(), &with.topic)?,
                ));
                Some(with)
            }
            None => None,
        };
        upstream = ids(&topic, partitions);
        out.push(Cut {
            at: c.at,
            topic: topic.clone(),
            upstream: writers,
            shuffle: Shuffle::new(topic, partitions, key, producer.clone(), max_bytes),
            step,
            side,
        });
    }
    let mut stages = Stages::new(spec.steps.len(), out);
    stages.purger = Some(Purger::new(admin)?);
    Ok(stages)
}

/// The ids of the tasks of `topic`'s `partitions`: `topic:partition`.
fn ids(topic: &str, partitions: i32) -> Vec<Arc<str>> {
    (0..partitions)
        .map(|p| Arc::from(format!("{topic}:{p}")))
        .collect()
}

/// The `with` topic of `join`, re-keyed by `on.right` into `topic`.
#[allow(clippy::too_many_arguments)]
fn side_input(
    spec: &tributary_crds::StreamPipelineSpec,
    join: &tributary_crds::JoinStep,
    client: &AdminClient<DefaultClientContext>,
    topic: &str,
    partitions: i32,
    producer: &SharedProducer,
    max_bytes: usize,
    step: &str,
) -> Result<SideInput, String> {
    let Some(k) = &join.with.kafka else {
        return Err(format!(
            "{step}: after a kafka source a join's with side must be a kafka topic"
        ));
    };
    // Fails early, naming the topic, when it does not exist.
    partition_count(client.inner(), &k.topic)?;
    let decoder = crate::source::Decoder::new(&crate::runtime::side_spec(&spec.source, &join.with))
        .map_err(|e| format!("{step}.with: {e}"))?;
    let key = Expr::compile_as(&join.on.right, &crate::expr::env(), "other")
        .map_err(|e| format!("{step}: on.right does not compile: {e}"))?;
    let shuffle = Shuffle::new(
        topic.to_owned(),
        partitions,
        vec![key],
        producer.clone(),
        max_bytes,
    )
    .for_other_side();
    tracing::info!(with = %k.topic, into = %topic, "the join's with topic is read by the group and re-keyed by on.right");
    Ok(SideInput {
        topic: Arc::from(k.topic.as_str()),
        decoder,
        start_from: k.start_from,
        shuffle: (shuffle, step.to_owned()),
    })
}

/// The stages of a pipeline as the engine runs them; one stage when
/// nothing is repartitioned.
pub struct Stages {
    /// Per stage: the steps its tasks run.
    ranges: Vec<std::ops::Range<usize>>,
    /// Per stage `s ≥ 1` (at `s - 1`): the topic it reads and the ids of
    /// the upstream tasks that write into it.
    inputs: Vec<(Arc<str>, Vec<Arc<str>>)>,
    /// Per stage `s` before the last (at `s`): the writer into the next
    /// stage's topic, and the name of the step it feeds (dead letters).
    shuffles: Vec<(Shuffle, String)>,
    /// The `with` topics of joins.
    sides: Vec<SideInput>,
    /// Deletes what the repartition topics no longer need.
    purger: Option<Purger>,
}

/// A join's `with` topic after a Kafka main source: its partitions are
/// tasks of the group without steps, whose records are re-keyed by
/// `on.right` into the join's repartition topic.
pub struct SideInput {
    /// The topic.
    pub topic: Arc<str>,
    /// Its decoder (`with.format`, `with.eventTime`).
    pub decoder: crate::source::Decoder,
    /// Where a partition without a committed offset starts.
    pub start_from: tributary_crds::StartFrom,
    /// The writer into the join's topic, and the join's name.
    pub shuffle: (Shuffle, String),
}

/// What reads a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A source topic or a repartition topic: the tasks of stage `n`.
    Stage(usize),
    /// The `with` topic `n` of a join.
    Side(usize),
}

/// One repartition as `run` set it up.
pub struct Cut {
    /// The first step behind it.
    pub at: usize,
    /// Its topic.
    pub topic: String,
    /// The ids (`topic:partition`) of the tasks that write into it.
    pub upstream: Vec<Arc<str>>,
    /// The writer into it.
    pub shuffle: Shuffle,
    /// The name of step `at`.
    pub step: String,
    /// The join's `with` topic, when step `at` is a join.
    pub side: Option<SideInput>,
}

impl Stages {
    /// Stages of `steps` steps cut at `cuts` (in step order).
    #[must_use]
    pub fn new(steps: usize, cuts: Vec<Cut>) -> Self {
        let mut ranges = Vec::with_capacity(cuts.len() + 1);
        let mut inputs = Vec::with_capacity(cuts.len());
        let mut shuffles = Vec::with_capacity(cuts.len());
        let mut sides = Vec::new();
        let mut start = 0;
        for c in cuts {
            ranges.push(start..c.at);
            start = c.at;
            inputs.push((Arc::from(c.topic.as_str()), c.upstream));
            shuffles.push((c.shuffle, c.step));
            sides.extend(c.side);
        }
        ranges.push(start..steps);
        Self {
            ranges,
            inputs,
            shuffles,
            sides,
            purger: None,
        }
    }

    /// After a checkpoint committed `committed` (topic, partition, offset,
    /// metadata): purges the repartition partitions below their low-water
    /// offsets (see `purge`).
    pub fn purge(&mut self, committed: &[(String, i32, i64, Meta)]) {
        let Some(purger) = self.purger.as_mut() else {
            return;
        };
        let inputs = &self.inputs;
        let cuts = cut_points(committed, |t| inputs.iter().any(|(topic, _)| &**topic == t));
        purger.after_commit(cuts);
    }

    /// What reads `topic`.
    #[must_use]
    pub fn role(&self, topic: &str) -> Role {
        match self.sides.iter().position(|s| &*s.topic == topic) {
            Some(i) => Role::Side(i),
            None => Role::Stage(self.stage_of(topic)),
        }
    }

    /// The `with` topic `i`.
    #[must_use]
    pub fn side(&self, i: usize) -> Option<&SideInput> {
        self.sides.get(i)
    }

    /// The writer out of the tasks reading `topic`, the step it feeds, and
    /// whether they read a topic outside the pipeline (their records carry
    /// their place: see `SEQ_HEADER`); `None` for the last stage.
    pub fn writer(&mut self, topic: &str) -> Option<(&mut Shuffle, &str, bool)> {
        match self.role(topic) {
            Role::Side(i) => self
                .sides
                .get_mut(i)
                .map(|s| (&mut s.shuffle.0, s.shuffle.1.as_str(), true)),
            Role::Stage(n) => self
                .shuffles
                .get_mut(n)
                .map(|(w, step)| (w, step.as_str(), n == 0)),
        }
    }

    /// The stage reading `topic` (0: a source topic).
    #[must_use]
    pub fn stage_of(&self, topic: &str) -> usize {
        self.inputs
            .iter()
            .position(|(t, _)| &**t == topic)
            .map_or(0, |i| i + 1)
    }

    /// The steps stage `s` runs.
    #[must_use]
    pub fn range(&self, s: usize) -> std::ops::Range<usize> {
        self.ranges.get(s).cloned().unwrap_or(0..0)
    }

    /// The ids of the upstream tasks that write into stage `s` (`None`
    /// for stage 0).
    #[must_use]
    pub fn upstream(&self, s: usize) -> Option<&[Arc<str>]> {
        s.checked_sub(1)
            .and_then(|i| self.inputs.get(i))
            .map(|(_, ids)| ids.as_slice())
    }

    /// The topics the group reads besides the source's: repartition
    /// topics and joins' `with` topics.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.inputs
            .iter()
            .map(|(t, _)| &**t)
            .chain(self.sides.iter().map(|s| &*s.topic))
    }

    /// Waits for every repartition write (`atLeastOnce`).
    ///
    /// # Errors
    /// When a flush fails.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.shuffles
            .iter_mut()
            .map(|(s, _)| s)
            .chain(self.sides.iter_mut().map(|s| &mut s.shuffle.0))
            .try_for_each(Shuffle::flush)
    }
}
