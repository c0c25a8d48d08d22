//! Checks of the `cep` and `anomaly` steps.

use std::collections::HashSet;

use super::Errors;
use super::expr::check_into;
use crate::{AnomalyMethod, AnomalyStep, CepStep, PatternStep};

const EVENT: &[&str] = &["event"];

/// Steps in one CEP pattern: the engine keeps a bit per condition.
const MAX_STEPS: usize = 32;

pub(super) fn validate_cep(c: &CepStep, path: &str, errs: &mut Errors) {
    for (j, k) in c.key_by.iter().enumerate() {
        check_into(k.expr(), &format!("{path}.keyBy[{j}]"), EVENT, errs);
    }
    if c.emit.name.trim().is_empty() {
        errs.push(
            format!("{path}.emit.name"),
            "required: it is the match's `pattern` field",
        );
    }
    let p = &c.pattern;
    let pp = format!("{path}.pattern");
    if p.within.as_millis_i64() <= 0 {
        errs.push(
            format!("{pp}.within"),
            "must be at least 1ms; it bounds the state",
        );
    }
    let kinds: Vec<(&str, &Vec<PatternStep>)> = [
        ("sequence", p.sequence.as_ref()),
        ("allOf", p.all_of.as_ref()),
        ("anyOf", p.any_of.as_ref()),
    ]
    .into_iter()
    .filter_map(|(n, s)| s.map(|s| (n, s)))
    .collect();
    let (kind, steps) = match kinds.as_slice() {
        [one] => *one,
        [] => return errs.push(&pp, "set one of sequence, allOf, anyOf"),
        _ => return errs.push(&pp, "set only one of sequence, allOf, anyOf"),
    };
    let sp = format!("{pp}.{kind}");
    if steps.is_empty() {
        errs.push(&sp, "at least one step is required");
    }
    if steps.len() > MAX_STEPS {
        errs.push(&sp, format!("at most {MAX_STEPS} steps"));
    }
    let mut names = HashSet::new();
    for (j, s) in steps.iter().enumerate() {
        let sp = format!("{sp}[{j}]");
        if s.name.trim().is_empty() || !names.insert(s.name.as_str()) {
            errs.push(format!("{sp}.name"), "required and unique in the pattern");
        }
        check_into(&s.when, &format!("{sp}.when"), EVENT, errs);
        if let Some(n) = &s.not_followed_by {
            check_into(n, &format!("{sp}.notFollowedBy"), EVENT, errs);
        }
        if let Some(t) = &s.times {
            if t.min == 0 {
                errs.push(
                    format!("{sp}.times.min"),
                    "must be at least 1; use optional: true for zero",
                );
            }
            if t.max.is_some_and(|m| m < t.min) {
                errs.push(format!("{sp}.times.max"), "must not be below min");
            }
        }
        if kind != "sequence" {
            if s.optional {
                errs.push(
                    format!("{sp}.optional"),
                    format!("only sequence steps can be optional, not {kind}"),
                );
            }
            if s.not_followed_by.is_some() {
                errs.push(
                    format!("{sp}.notFollowedBy"),
                    format!("only sequence steps take notFollowedBy, not {kind}"),
                );
            }
        }
        if kind == "allOf"
            && s.times
                .as_ref()
                .is_some_and(|t| t.max.is_some_and(|m| m != t.min) || t.greedy)
        {
            errs.push(
                format!("{sp}.times"),
                "allOf counts exactly times.min events per step; drop max and greedy",
            );
        }
    }
    if kind == "sequence" && !steps.is_empty() && steps.iter().all(|s| s.optional) {
        errs.push(&sp, "at least one step must not be optional");
    }
}

pub(super) fn validate_anomaly(a: &AnomalyStep, path: &str, errs: &mut Errors) {
    check_into(&a.of, &format!("{path}.of"), EVENT, errs);
    for (j, k) in a.key_by.iter().enumerate() {
        check_into(k.expr(), &format!("{path}.keyBy[{j}]"), EVENT, errs);
    }
    if a.window < 2 {
        errs.push(format!("{path}.window"), "must be at least 2 values");
    }
    let finite_pos = |v: f64| v.is_finite() && v > 0.0;
    match a.method {
        AnomalyMethod::Zscore => match a.threshold {
            None => errs.push(format!("{path}.threshold"), "required for zscore (e.g. 3)"),
            Some(t) if !finite_pos(t) => {
                errs.push(format!("{path}.threshold"), "must be a number > 0")
            }
            Some(_) => {}
        },
        AnomalyMethod::Iqr => {
            if let (Some(k), Some(t)) = (a.k, a.threshold)
                && (k - t).abs() > f64::EPSILON
            {
                errs.push(
                    format!("{path}.threshold"),
                    "for iqr, threshold is an alias of k; set one of them",
                );
            }
            if a.k
                .or(a.threshold)
                .is_some_and(|k| !(k.is_finite() && k >= 0.0))
            {
                errs.push(format!("{path}.k"), "must be a number >= 0");
            }
        }
        AnomalyMethod::IsolationForest => {
            match a.threshold {
                None => errs.push(
                    format!("{path}.threshold"),
                    "required for isolationForest (a score in (0, 1), e.g. 0.6)",
                ),
                Some(t) if !(t > 0.0 && t < 1.0) => {
                    errs.push(format!("{path}.threshold"), "must be in (0, 1)")
                }
                Some(_) => {}
            }
            if a.sample_size.is_some_and(|s| s < 2) {
                errs.push(format!("{path}.sampleSize"), "must be at least 2");
            }
            if a.trees == Some(0) {
                errs.push(format!("{path}.trees"), "must be at least 1");
            }
        }
    }
    if a.method != AnomalyMethod::Iqr && a.k.is_some() {
        errs.push(format!("{path}.k"), "only used by iqr");
    }
    if a.method != AnomalyMethod::IsolationForest
        && (a.sample_size.is_some() || a.trees.is_some() || a.seed.is_some())
    {
        errs.push(
            path,
            "sampleSize, trees and seed are only used by isolationForest",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::tests::{assert_refused, errors as base_errors};

    fn errors(steps: &str) -> Vec<String> {
        base_errors(&format!("steps: {steps}\n"))
    }

    fn refused(steps: &str, path: &str, needle: &str) {
        assert_refused(&format!("steps: {steps}\n"), path, needle);
    }

    #[test]
    fn good_cep_and_anomaly_steps_pass() {
        let e = errors(
            "[{cep: {keyBy: [event.user], pattern: {sequence: [{name: f, when: \"event.t == 'f'\", times: {min: 5, greedy: true}}, {name: ok, when: \"event.t == 'ok'\", notFollowedBy: 'event.x'}], within: 1m, skip: skipPastLastEvent}, emit: {name: bf}}}, {anomaly: {method: iqr, of: event.v, k: 3, emit: all}}, {anomaly: {method: isolationForest, of: '[event.v]', threshold: 0.6, seed: 7}}]",
        );
        assert!(e.is_empty(), "{e:#?}");
    }

    #[test]
    fn cep_mistakes_name_their_field() {
        let seq = |s: &str| {
            format!("[{{cep: {{pattern: {{sequence: [{s}], within: 1m}}, emit: {{name: x}}}}}}]")
        };
        refused(
            &seq("{name: a, when: 'event.a =='}"),
            "spec.steps[0].cep.pattern.sequence[0].when",
            "not a valid CEL",
        );
        refused(
            &seq("{name: a, when: 'true'}, {name: a, when: 'true'}"),
            "spec.steps[0].cep.pattern.sequence[1].name",
            "unique",
        );
        refused(
            &seq("{name: a, when: 'true', times: {min: 3, max: 2}}"),
            "spec.steps[0].cep.pattern.sequence[0].times.max",
            "below min",
        );
        refused(
            &seq("{name: a, when: 'true', optional: true}"),
            "spec.steps[0].cep.pattern.sequence",
            "not be optional",
        );
        refused(
            "[{cep: {pattern: {sequence: [{name: a, when: 'true'}], within: 0s}, emit: {name: x}}}]",
            "spec.steps[0].cep.pattern.within",
            "at least 1ms",
        );
        refused(
            "[{cep: {pattern: {within: 1m}, emit: {name: x}}}]",
            "spec.steps[0].cep.pattern",
            "one of sequence",
        );
        refused(
            "[{cep: {pattern: {allOf: [{name: a, when: 'true', optional: true}], within: 1m}, emit: {name: x}}}]",
            "spec.steps[0].cep.pattern.allOf[0].optional",
            "only sequence",
        );
        refused(
            "[{cep: {pattern: {anyOf: [{name: a, when: 'true'}], within: 1m}, emit: {name: ''}}}]",
            "spec.steps[0].cep.emit.name",
            "required",
        );
    }

    #[test]
    fn anomaly_mistakes_name_their_field() {
        refused(
            "[{anomaly: {method: zscore, of: event.v}}]",
            "spec.steps[0].anomaly.threshold",
            "required",
        );
        refused(
            "[{anomaly: {method: isolationForest, of: event.v, threshold: 2}}]",
            "spec.steps[0].anomaly.threshold",
            "(0, 1)",
        );
        refused(
            "[{anomaly: {method: zscore, of: event.v, threshold: 3, window: 1}}]",
            "spec.steps[0].anomaly.window",
            "at least 2",
        );
        refused(
            "[{anomaly: {method: iqr, of: event.v, k: 1, threshold: 2}}]",
            "spec.steps[0].anomaly.threshold",
            "alias",
        );
        refused(
            "[{anomaly: {method: zscore, of: 'event.v +', threshold: 3}}]",
            "spec.steps[0].anomaly.of",
            "not a valid CEL",
        );
    }
}
