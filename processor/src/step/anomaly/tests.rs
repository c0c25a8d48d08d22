//! Planted anomalies are found: z-score and IQR scores equal a direct
//! reference computation, the isolation forest ranks planted outliers on top.

#![allow(clippy::cast_precision_loss, reason = "small test values")]

use serde_json::{Value, json};
use tributary_crds::AnomalyStep;

use super::Anomaly;
use super::forest::{Forest, SplitMix64};
use crate::record::Record;
use crate::step::{Emit, Step};

fn step(yaml: &str) -> Anomaly {
    let spec: AnomalyStep = serde_yaml_ng::from_str(yaml).expect("spec");
    Anomaly::new("anomaly-0".into(), &spec, &crate::expr::env()).expect("compiles")
}

/// A noisy but deterministic series with spikes at `planted`.
fn series(n: usize, planted: &[usize]) -> Vec<f64> {
    let mut rng = SplitMix64::new(7);
    (0..n)
        .map(|i| {
            // Bell-shaped noise in (-2, 2): a sum of four uniforms.
            let base = 18.0 + (0..4).map(|_| rng.unit()).sum::<f64>();
            if planted.contains(&i) {
                base + 15.0
            } else {
                base
            }
        })
        .collect()
}

fn run(a: &mut Anomaly, values: &[f64]) -> Vec<Value> {
    let recs = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record::new(json!({"sensor": "s1", "i": i, "v": v}), i as i64))
        .collect();
    let mut emit = Emit::default();
    a.process(recs, &mut emit).unwrap();
    emit.out.into_iter().map(|r| r.value).collect()
}

fn flagged(out: &[Value]) -> Vec<usize> {
    out.iter()
        .filter(|v| v["anomaly"]["isAnomaly"] == json!(true))
        .map(|v| usize::try_from(v["i"].as_u64().unwrap()).unwrap())
        .collect()
}

#[test]
fn zscore_equals_the_reference_and_finds_planted_spikes() {
    let planted = [150, 300, 420];
    let xs = series(500, &planted);
    let mut a = step(
        "{method: zscore, of: event.v, threshold: 4, window: 100, keyBy: [event.sensor], emit: all}",
    );
    let out = run(&mut a, &xs);
    for (i, o) in out.iter().enumerate().skip(100) {
        let prev = &xs[i - 100..i];
        let n = prev.len() as f64;
        let mean = prev.iter().sum::<f64>() / n;
        let sd = (prev.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let want = (xs[i] - mean).abs() / sd;
        let got = o["anomaly"]["score"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-9 * want.max(1.0),
            "i={i}: {got} vs {want}"
        );
    }
    assert_eq!(flagged(&out), planted);
    assert_eq!(
        out[0]["anomaly"]["score"],
        Value::Null,
        "no score before 2 values"
    );
}

#[test]
fn iqr_equals_the_reference_and_finds_planted_spikes() {
    let planted = [120, 260, 399];
    let xs = series(400, &planted);
    let mut a = step("{method: iqr, of: event.v, k: 3, window: 50, emit: all}");
    let out = run(&mut a, &xs);
    let q = |s: &[f64], p: f64| {
        let h = (s.len() - 1) as f64 * p;
        let (lo, hi) = (h.floor(), h.ceil());
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "small index"
        )]
        let (l, u) = (lo as usize, hi as usize);
        s[l] + (h - lo) * (s[u] - s[l])
    };
    for (i, o) in out.iter().enumerate().skip(50) {
        let mut prev = xs[i - 50..i].to_vec();
        prev.sort_by(f64::total_cmp);
        let (q1, q3) = (q(&prev, 0.25), q(&prev, 0.75));
        let x = xs[i];
        let want = if x > q3 {
            (x - q3) / (q3 - q1)
        } else if x < q1 {
            (q1 - x) / (q3 - q1)
        } else {
            0.0
        };
        let got = o["anomaly"]["score"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-9 * want.max(1.0),
            "i={i}: {got} vs {want}"
        );
    }
    assert_eq!(flagged(&out), planted);
    assert_eq!(out[9]["anomaly"]["threshold"], json!(3.0));
    assert_eq!(out[49]["anomaly"]["score"], Value::Null);
}

#[test]
fn only_anomalies_are_emitted_by_default() {
    let planted = [180];
    let xs = series(200, &planted);
    let mut a = step("{method: zscore, of: event.v, threshold: 4}");
    let out = run(&mut a, &xs);
    assert_eq!(flagged(&out), planted);
    assert!(out.iter().all(|v| v["anomaly"]["isAnomaly"] == json!(true)));
    assert_eq!(out[0]["anomaly"]["method"], json!("zscore"));
}

#[test]
fn isolation_forest_ranks_planted_outliers_on_top() {
    let mut rng = SplitMix64::new(3);
    let mut pts: Vec<Vec<f64>> = (0..250)
        .map(|_| vec![rng.unit() * 10.0, rng.unit() * 10.0])
        .collect();
    let planted = [vec![40.0, 5.0], vec![-30.0, -30.0], vec![5.0, 60.0]];
    pts.extend(planted.iter().cloned());
    let forest = Forest::train(&pts, 100, 128, &mut SplitMix64::new(42));
    let mut ranked: Vec<(f64, usize)> = pts
        .iter()
        .enumerate()
        .map(|(i, p)| (forest.score(p), i))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let top: Vec<usize> = ranked.iter().take(3).map(|r| r.1).collect();
    for i in 250..253 {
        assert!(
            top.contains(&i),
            "planted point {i} not in the top 3: {ranked:?}"
        );
    }
    assert!(
        ranked[0].0 > 0.6 && ranked[10].0 < 0.6,
        "{:?}",
        &ranked[..12]
    );
}

#[test]
fn isolation_forest_step_scores_spikes_highest_after_warm_up() {
    let planted = [230, 330];
    let xs = series(400, &planted);
    let yaml = "{method: isolationForest, of: '[event.v]', threshold: 0.6, window: 200, seed: 1, emit: all}";
    let out = run(&mut step(yaml), &xs);
    let mut ranked: Vec<(f64, usize)> = out
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o["anomaly"]["score"].as_f64().map(|s| (s, i)))
        .collect();
    assert_eq!(ranked.len(), 200, "scored once the window has filled");
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut top: Vec<usize> = ranked.iter().take(2).map(|r| r.1).collect();
    top.sort_unstable();
    assert_eq!(top, planted, "{:?}", &ranked[..5]);
    assert!(planted.iter().all(|p| flagged(&out).contains(p)));
    // Seeded: the same input gives the same scores.
    assert_eq!(out, run(&mut step(yaml), &xs));
}

/// The changelog contract: each detector restored from its snapshot
/// scores the rest of the series as the one that wrote it.
#[test]
fn every_detector_restored_from_its_snapshot_goes_on_as_the_original() {
    let xs = series(600, &[150, 450]);
    for yaml in [
        "{method: zscore, of: event.v, threshold: 3, window: 100, emit: all}",
        "{method: iqr, of: event.v, k: 3, window: 50, emit: all}",
        "{method: isolationForest, of: '[event.v]', threshold: 0.6, window: 200, seed: 1, emit: all}",
    ] {
        let (mut original, mut uninterrupted) = (step(yaml), step(yaml));
        assert_eq!(
            run(&mut original, &xs[..300]),
            run(&mut uninterrupted, &xs[..300])
        );
        let crate::step::Snapshot::State(bytes) = original.snapshot() else {
            panic!("{yaml}: anomaly writes its state");
        };
        let mut restored = step(yaml);
        restored.restore(&bytes).unwrap();
        let want = run(&mut uninterrupted, &xs[300..]);
        assert_eq!(run(&mut restored, &xs[300..]), want, "{yaml}");
        assert!(
            !flagged(&want).is_empty(),
            "{yaml}: the test flags something"
        );
    }
}
