//! Processing steps. Each step is a batch-at-a-time operator: only
//! [`Step::process`] is required; watermark, timer and end-of-input hooks
//! default to doing nothing, as in Arroyo's operator trait.

mod anomaly;
pub mod cep;
mod dedupe;
pub mod enrich;
mod filter;
mod http;
pub mod join;
mod map;
mod validate;
pub mod window;

use std::sync::Arc;

use tributary_crds::{StepKind, StreamPipelineSpec};

use crate::expr::ExprError;
use crate::record::Record;
use crate::sink::DeadLetter;

pub use dedupe::Dedupe;
pub use filter::{Filter, FlatMap};
pub use map::Map;
pub use validate::Validate;

/// A step stopped the pipeline (`onFailure: fail`) or could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// An expression does not compile.
    #[error("{path}: {source}")]
    Expr {
        /// Field path of the expression.
        path: String,
        /// The compile error.
        #[source]
        source: ExprError,
    },
    /// A validation rule failed with `onFailure: fail`.
    #[error("step {step}: {message} (onFailure: fail stops the pipeline)")]
    Failed {
        /// The step.
        step: String,
        /// Which rule and record.
        message: String,
    },
    /// A lookup table could not be loaded.
    #[error("{path}: {message}")]
    Table {
        /// Field path of the table.
        path: String,
        /// Why.
        message: String,
    },
    /// The step kind has no runtime yet (validation refuses it first).
    #[error("{0}: not supported yet")]
    Unsupported(String),
}

/// Where a step's output goes.
#[derive(Default, Debug)]
pub struct Emit {
    /// Main output, to the next step.
    pub out: Vec<Record>,
    /// Records for the dead-letter sink.
    pub dead: Vec<DeadLetter>,
    /// Records for a named sink (late side output).
    pub side: Vec<(Arc<str>, Record)>,
    /// Records dropped on purpose (filtered, deduplicated, late, invalid), for metrics.
    pub dropped: u64,
    /// Late records (whatever `lateEvents` did with them), for metrics.
    pub late: u64,
}

/// A step's state as the Kafka changelog stores it (see
/// `connector::kafka::changelog`).
#[derive(Debug, PartialEq)]
pub enum Snapshot {
    /// The step keeps nothing between records.
    Stateless,
    /// The state, encoded with [`encode`].
    State(Vec<u8>),
    /// The step cannot write its state: a restore replays the input instead.
    Unsupported,
}

/// Encodes step state for a [`Snapshot`]: MessagePack with field names,
/// self-describing (JSON values and maps keyed by window keys round-trip)
/// and tolerant of fields reordered between versions.
#[must_use]
pub fn encode<T: serde::Serialize>(state: &T) -> Snapshot {
    match rmp_serde::to_vec_named(state) {
        Ok(bytes) => Snapshot::State(bytes),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode step state; a restore will replay the input");
            Snapshot::Unsupported
        }
    }
}

/// Decodes what [`encode`] wrote.
///
/// # Errors
/// When the bytes are not such a state (a different version wrote them).
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(bytes).map_err(|e| e.to_string())
}

/// One operator in the chain.
pub trait Step: Send {
    /// Display name (`filter-0`, or the step's `name`).
    fn name(&self) -> &str;

    /// Processes a batch of records.
    ///
    /// # Errors
    /// Only when the pipeline must stop (`onFailure: fail`).
    fn process(&mut self, input: Vec<Record>, emit: &mut Emit) -> Result<(), StepError>;

    /// Processes a batch of the step's second input — the `with` source of
    /// a `join` — which enters the chain at this step instead of the first.
    ///
    /// # Errors
    /// As [`Step::process`]; a step with one input refuses it.
    fn process_other(&mut self, input: Vec<Record>, emit: &mut Emit) -> Result<(), StepError> {
        let _ = (input, emit);
        Err(StepError::Unsupported(format!(
            "{}: a second input",
            self.name()
        )))
    }

    /// The watermark advanced to `wm`.
    fn on_watermark(&mut self, wm: i64, emit: &mut Emit) {
        let _ = (wm, emit);
    }

    /// Processing time is `now` (ms); called a few times a second.
    fn on_tick(&mut self, now: i64, emit: &mut Emit) {
        let _ = (now, emit);
    }

    /// Bounded input ended (after the final +∞ watermark).
    fn finish(&mut self, emit: &mut Emit) {
        let _ = emit;
    }

    /// Keys or windows held, for the state-size metric.
    fn state_size(&self) -> usize {
        0
    }

    /// The step's state for the changelog. A stateful step that does not
    /// override this (and [`Step::restore`]) is restored by replay.
    fn snapshot(&self) -> Snapshot {
        Snapshot::Unsupported
    }

    /// Takes back the state [`Step::snapshot`] wrote.
    ///
    /// # Errors
    /// When the bytes are not this step's state; the caller then restores
    /// by replay on a freshly built step.
    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let _ = state;
        Err(format!("{}: no state to restore", self.name()))
    }

    /// The smallest source offset of any input record this step still holds
    /// in its state (open windows, dedupe entries, windows kept for allowed
    /// lateness), or `None` when it holds none. A restore replays the input
    /// from here to rebuild the state (see `connector::kafka`). Stateless
    /// steps hold nothing.
    fn low_water(&self) -> Option<i64> {
        None
    }

    /// [`Step::low_water`] in the numbering of the main source only: a
    /// join's `with` source numbers its records on its own, so its offsets
    /// say nothing about the main source's (outside a Kafka repartition
    /// topic, where both sides share one log).
    fn main_low_water(&self) -> Option<i64> {
        self.low_water()
    }

    /// A join's: the smallest offset of its `with` source that may not be
    /// acknowledged yet, given what the steps after it hold (`downstream`).
    /// `None` for every other step, or when nothing is held.
    fn side_low_water(&mut self, downstream: join::Downstream) -> Option<i64> {
        let _ = downstream;
        None
    }

    /// A join's: lowers the acknowledgement marks `main` and `side` so
    /// that no released record redelivered after a crash would miss every
    /// partner it had; `confirmed` (main, side) are what the two brokers
    /// confirmed, below which nothing comes back.
    fn cross_marks(&self, main: i64, side: i64, confirmed: (i64, i64)) -> (i64, i64) {
        let _ = confirmed;
        (main, side)
    }

    /// A join's: the main source confirmed it acknowledged below `main`,
    /// its `with` source below `side`.
    fn acked(&mut self, main: i64, side: i64) {
        let _ = (main, side);
    }
}

/// Builds the chain of steps of a spec.
///
/// # Errors
/// [`StepError`] naming the field of an expression that does not compile.
pub fn build(spec: &StreamPipelineSpec) -> Result<Vec<Box<dyn Step>>, StepError> {
    build_at(spec, std::path::Path::new("."))
}

/// [`build`], resolving relative file paths (enrich tables) against `base`,
/// the pipeline file's folder.
///
/// # Errors
/// As [`build`], and [`StepError::Table`] when a table does not load.
pub fn build_at(
    spec: &StreamPipelineSpec,
    base: &std::path::Path,
) -> Result<Vec<Box<dyn Step>>, StepError> {
    build_stage(spec, base, 0..spec.steps.len())
}

/// The steps of one stage of a repartitioned Kafka pipeline (see
/// `connector::kafka::repartition`): the steps in `range` are built, the
/// ones before it are [`Elsewhere`] (so indices, and the metrics that use
/// them, stay those of the spec), the ones after it are left out.
///
/// # Errors
/// As [`build_at`].
pub fn build_stage(
    spec: &StreamPipelineSpec,
    base: &std::path::Path,
    range: std::ops::Range<usize>,
) -> Result<Vec<Box<dyn Step>>, StepError> {
    let env = crate::expr::env();
    let mut steps: Vec<Box<dyn Step>> = Vec::with_capacity(range.end);
    for (i, s) in spec.steps.iter().enumerate().take(range.end) {
        let name = s.display_name(i);
        if i < range.start {
            steps.push(Box::new(Elsewhere(name)));
            continue;
        }
        let path = |kind: &str| format!("spec.steps[{i}].{kind}");
        let step: Box<dyn Step> = match s.kind() {
            Some(StepKind::Filter(e)) => Box::new(Filter::new(name, e, &env).map_err(
                |source| StepError::Expr {
                    path: path("filter"),
                    source,
                },
            )?),
            Some(StepKind::FlatMap(e)) => Box::new(FlatMap::new(name, e, &env).map_err(
                |source| StepError::Expr {
                    path: path("flatMap"),
                    source,
                },
            )?),
            Some(StepKind::Map(m)) => {
                Box::new(Map::new(name, m, &env).map_err(|source| StepError::Expr {
                    path: path("map"),
                    source,
                })?)
            }
            Some(StepKind::Dedupe(d)) => Box::new(Dedupe::new(name, d, &env).map_err(
                |source| StepError::Expr {
                    path: path("dedupe"),
                    source,
                },
            )?),
            Some(StepKind::Validate(v)) => Box::new(Validate::new(name, v, &env).map_err(
                |source| StepError::Expr {
                    path: path("validate"),
                    source,
                },
            )?),
            Some(StepKind::Window(w)) => Box::new(
                window::operator::Windowed::new(name, w, &env).map_err(|source| {
                    StepError::Expr {
                        path: path("window"),
                        source,
                    }
                })?,
            ),
            Some(StepKind::Cep(c)) => {
                let processing_time = spec.source.event_time.is_none();
                let step =
                    cep::Cep::new(name, c, &env).map(|c| c.in_processing_time(processing_time));
                boxed(step, path("cep"))?
            }
            Some(StepKind::Anomaly(a)) => {
                boxed(anomaly::Anomaly::new(name, a, &env), path("anomaly"))?
            }
            Some(StepKind::Enrich(e)) => {
                let brokers = spec.source.kafka.as_ref().map(|k| k.brokers.as_str());
                Box::new(enrich::Enrich::new(
                    name,
                    e,
                    &env,
                    base,
                    brokers,
                    &path("enrich"),
                )?)
            }
            Some(StepKind::Join(j)) => {
                let processing_time = spec.source.event_time.is_none();
                match join::Join::new(name, j, &env) {
                    Ok(join) => Box::new(
                        join.in_processing_time(processing_time)
                            .main_acknowledges(spec.source.acknowledges(), j),
                    ),
                    Err((field, source)) => {
                        return Err(StepError::Expr {
                            path: format!("{}.{field}", path("join")),
                            source,
                        });
                    }
                }
            }
            Some(StepKind::Http(h)) => Box::new(http::Http::new(name, h)),
            None => return Err(StepError::Unsupported(format!("spec.steps[{i}]"))),
        };
        steps.push(step);
    }
    Ok(steps)
}

/// A step run by another stage's tasks: it holds its place in the chain.
struct Elsewhere(String);

impl Step for Elsewhere {
    fn name(&self) -> &str {
        &self.0
    }

    fn process(&mut self, input: Vec<Record>, emit: &mut Emit) -> Result<(), StepError> {
        emit.out.extend(input);
        Ok(())
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::Stateless
    }
}

/// A step that compiled, boxed; or the compile error at `path`.
fn boxed<S: Step + 'static>(
    step: Result<S, ExprError>,
    path: String,
) -> Result<Box<dyn Step>, StepError> {
    match step {
        Ok(s) => Ok(Box::new(s)),
        Err(source) => Err(StepError::Expr { path, source }),
    }
}
