//! Internal repartition topics: a keyed step whose key is not the input's
//! partitioning (see `tributary_crds::stages`) reads its records from a
//! topic they were re-keyed into, as Kafka Streams does for `groupBy`.
//!
//! A pipeline is cut into stages at each repartition. Stage 0 reads the
//! source topics; stage `s > 0` reads `<group>-<step name>-repartition`,
//! or `<group>-step<at>-repartition` for an unnamed step
//! (`Repartition::topic`). Each stage's tasks run their steps, then write
//! what comes out to the next stage's topic: value as JSON, Kafka timestamp = event time, the
//! partition chosen by a hash of the key, the original key and headers
//! kept. Under `exactlyOnce` those writes are in the checkpoint's
//! transaction like any output, so the hop adds no duplicate.
//!
//! Watermarks cross the hop as control records (empty value, header
//! `tributary.wm` = `<upstream>=<ms>`), sent by each upstream task to
//! every partition when its watermark moves. A downstream task's watermark
//! is the minimum over its upstream tasks — every partition of the topics
//! it is fed from, each at the task's restored watermark until it speaks —
//! as Flink takes the minimum over its input channels. An upstream task
//! idle for the source's `idleTimeout` sends `idle` and is left out of the
//! minimum until it sends a watermark again. Nothing is sent while
//! nothing moves, so an idle pipeline's topics drain.
//!
//! # Layout
//! - `setup`: the stages of a spec, their topics created at start.
//! - `admin`: creating topics, reading partition counts.
//! - `shuffle`: writing a stage's output into the next stage's topic.
//! - `inbound`: reading it back: records, watermarks, what was seen.
//! - `purge`: deleting what no task will read again.

pub mod admin;
mod inbound;
mod purge;
mod setup;
mod shuffle;

pub use inbound::{Inbound, Mark, Seq, Upstream, decode};
pub use setup::{Role, Stages, stages};

/// Header of a control record: `<upstream>=<watermark ms>` or `<upstream>=idle`.
pub const WATERMARK_HEADER: &str = "tributary.wm";
/// Header keeping a re-keyed record's original Kafka key.
const KEY_HEADER: &str = "tributary.key";
/// Header naming the source partition a re-keyed record was read from and
/// its place there: `<upstream>@<offset>.<k>` (the `k`-th output of that
/// input record). A downstream task drops what it has seen (an upstream
/// task re-sending after a crash under `atLeastOnce`).
const SEQ_HEADER: &str = "tributary.seq";
/// Header marking a record of a join's `with` side (`right`): the task
/// behind the repartition hands it to the join as its second input.
const SIDE_HEADER: &str = "tributary.side";
