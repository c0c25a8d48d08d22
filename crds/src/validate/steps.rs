//! Checks of `spec.steps[*]`.

use std::collections::HashSet;

use super::Errors;
use super::expr::check_into;
use crate::{
    EmitMode, LateEvents, OnFailure, StepKind, StreamPipelineSpec, WindowStep, WindowType,
};

const EVENT: &[&str] = &["event"];

pub(super) fn validate_steps(
    spec: &StreamPipelineSpec,
    sinks: &HashSet<String>,
    errs: &mut Errors,
) {
    for (i, step) in spec.steps.iter().enumerate() {
        let base = format!("spec.steps[{i}]");
        let kinds = step.kinds();
        let kind = match kinds.as_slice() {
            [one] => *one,
            [] => {
                errs.push(&base, "no step kind set; set one of filter, map, flatMap, dedupe, validate, enrich, window, cep, anomaly, join, http");
                continue;
            }
            many => {
                let names: Vec<_> = many.iter().map(StepKind::field).collect();
                errs.push(
                    &base,
                    format!("exactly one step kind per step, found {}", names.join(", ")),
                );
                continue;
            }
        };
        let path = format!("{base}.{}", kind.field());
        match kind {
            StepKind::Filter(e) | StepKind::FlatMap(e) => check_into(e, &path, EVENT, errs),
            StepKind::Map(m) => {
                if m.set.is_empty() && m.remove.is_empty() {
                    errs.push(&path, "set or remove at least one field");
                }
                for (field, e) in &m.set {
                    if !valid_field_path(field) {
                        errs.push(
                            format!("{path}.set"),
                            format!("{field:?} is not a field path (letters, digits, _ and dots)"),
                        );
                    }
                    check_into(e, &format!("{path}.set.{field}"), EVENT, errs);
                }
                for (j, field) in m.remove.iter().enumerate() {
                    if !valid_field_path(field) {
                        errs.push(
                            format!("{path}.remove[{j}]"),
                            format!("{field:?} is not a field path"),
                        );
                    }
                }
            }
            StepKind::Dedupe(d) => {
                check_into(&d.key, &format!("{path}.key"), EVENT, errs);
                if d.within.is_zero() {
                    errs.push(format!("{path}.within"), "must be positive");
                }
            }
            StepKind::Validate(v) => {
                if v.rules.is_empty() {
                    errs.push(format!("{path}.rules"), "at least one rule is required");
                }
                let mut names = HashSet::new();
                for (j, r) in v.rules.iter().enumerate() {
                    if r.name.trim().is_empty() || !names.insert(&r.name) {
                        errs.push(
                            format!("{path}.rules[{j}].name"),
                            "required and unique among the rules",
                        );
                    }
                    check_into(&r.check, &format!("{path}.rules[{j}].check"), EVENT, errs);
                }
                if v.on_failure == OnFailure::DeadLetter && spec.dead_letter.is_none() {
                    errs.push(format!("{path}.onFailure"), "deadLetter needs spec.deadLetter to name a sink; add one or choose drop, warn or fail");
                }
            }
            StepKind::Window(w) => validate_window(w, &path, spec, sinks, errs),
            StepKind::Cep(c) => super::cep::validate_cep(c, &path, errs),
            StepKind::Anomaly(a) => super::cep::validate_anomaly(a, &path, errs),
            StepKind::Enrich(e) => super::enrich::validate_enrich(e, &path, spec, errs),
            StepKind::Join(j) => super::join::validate_join(j, &path, spec, errs),
            StepKind::Http(h) => super::http::validate_http_step(h, &path, spec, errs),
        }
    }
    repartition_names(spec, errs);
}

/// A named step behind a repartition names its internal topic
/// (`<group>-<name>-repartition`), so the name must fit a Kafka topic and
/// no two repartitions may share one.
fn repartition_names(spec: &StreamPipelineSpec, errs: &mut Errors) {
    let mut topics = HashSet::new();
    for r in spec.repartitions() {
        let path = format!("spec.steps[{}].name", r.at);
        if let Some(name) = &r.name
            && !crate::stages::topic_safe(name)
        {
            errs.push(
                path,
                format!("{name:?} names this step's repartition topic `<group>-{name}-repartition`: use only letters, digits, '.', '_' and '-'"),
            );
        } else if !topics.insert(r.topic("")) {
            errs.push(
                path,
                format!(
                    "{} is already the topic of an earlier step; give this step another name",
                    r.topic("<group>")
                ),
            );
        }
    }
}

fn valid_field_path(p: &str) -> bool {
    !p.is_empty()
        && p.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        })
}

fn positive(d: Option<crate::Duration>, path: &str, what: &str, errs: &mut Errors) {
    match d {
        None => errs.push(path, format!("required for a {what} window")),
        Some(d) if d.as_millis_i64() <= 0 => errs.push(path, "must be at least 1ms"),
        Some(_) => {}
    }
}

fn validate_window(
    w: &WindowStep,
    path: &str,
    spec: &StreamPipelineSpec,
    sinks: &HashSet<String>,
    errs: &mut Errors,
) {
    match w.kind {
        WindowType::Tumbling => positive(w.size, &format!("{path}.size"), "tumbling", errs),
        WindowType::Sliding => {
            positive(w.size, &format!("{path}.size"), "sliding", errs);
            positive(w.slide, &format!("{path}.slide"), "sliding", errs);
            if let (Some(size), Some(slide)) = (w.size, w.slide)
                && slide > size
            {
                errs.push(
                    format!("{path}.slide"),
                    format!("must not exceed size ({size}); events between windows would be lost"),
                );
            }
        }
        WindowType::Session => positive(w.gap, &format!("{path}.gap"), "session", errs),
        WindowType::Count => match w.count {
            None => errs.push(format!("{path}.count"), "required for a count window"),
            Some(0) => errs.push(format!("{path}.count"), "must be at least 1"),
            Some(_) => {}
        },
    }
    let mut outputs: HashSet<String> = ["windowStart", "windowEnd"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    for (j, k) in w.key_by.iter().enumerate() {
        let kp = format!("{path}.keyBy[{j}]");
        check_into(k.expr(), &kp, EVENT, errs);
        let name = k.output_name();
        if !outputs.insert(name.clone()) {
            errs.push(&kp, format!("output field {name:?} is used twice; give it a distinct name with {{name, expr}}"));
        }
    }
    if w.aggregate.is_empty() {
        errs.push(
            format!("{path}.aggregate"),
            "at least one aggregate is required",
        );
    }
    for (j, a) in w.aggregate.iter().enumerate() {
        let ap = format!("{path}.aggregate[{j}]");
        if a.name.trim().is_empty() {
            errs.push(format!("{ap}.name"), "required");
        } else if !outputs.insert(a.name.clone()) {
            errs.push(
                format!("{ap}.name"),
                format!("output field {:?} is used twice", a.name),
            );
        }
        match (&a.of, a.func.needs_of()) {
            (Some(of), _) => check_into(of, &format!("{ap}.of"), EVENT, errs),
            (None, true) => errs.push(format!("{ap}.of"), format!("required for {:?}", a.func)),
            (None, false) => {}
        }
        if a.func == crate::AggregateFn::Percentile {
            match a.q {
                Some(q) if (0.0..=1.0).contains(&q) => {}
                Some(_) => errs.push(format!("{ap}.q"), "must be in [0, 1]"),
                None => errs.push(format!("{ap}.q"), "required for percentile"),
            }
        }
    }
    if let Some(h) = &w.having {
        let mut allowed: Vec<&str> = outputs.iter().map(String::as_str).collect();
        allowed.push("event");
        allowed.sort_unstable();
        check_into(h, &format!("{path}.having"), &allowed, errs);
    }
    match w.late_events() {
        None => errs.push(
            format!("{path}.lateEvents"),
            "must be drop, log, deadLetter or sideOutput:<sink name>",
        ),
        Some(LateEvents::SideOutput(name)) if !sinks.contains(&name) => {
            errs.push(
                format!("{path}.lateEvents"),
                format!("no sink named {name:?} in spec.sinks"),
            );
        }
        Some(LateEvents::DeadLetter) if spec.dead_letter.is_none() => {
            errs.push(
                format!("{path}.lateEvents"),
                "deadLetter needs spec.deadLetter to name a sink",
            );
        }
        Some(_) => {}
    }
    if w.emit != EmitMode::Final {
        match &w.trigger {
            None => errs.push(
                format!("{path}.trigger"),
                "required when emit is updates or all",
            ),
            Some(t) if t.every.as_millis_i64() <= 0 => {
                errs.push(format!("{path}.trigger.every"), "must be at least 1ms")
            }
            Some(_) => {}
        }
    }
}
