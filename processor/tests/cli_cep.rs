//! The CEP and anomaly examples of `deploy/examples/` find exactly the
//! matches their headers promise, through `tributary run` on their files.

mod support;

use serde_json::Value;
use support::{repo_root, tributary};

/// Runs an example and returns its stdout records.
fn run(name: &str) -> Vec<Value> {
    let dir = repo_root().join("deploy/examples");
    let out = tributary(&["run", "-q", "-f", name], &dir);
    assert!(
        out.status.success(),
        "{name}: {}\n{}",
        out.status,
        out.stderr
    );
    out.json_lines()
}

/// `key value: step×count …` per match, in output order.
fn summary(matches: &[Value], key: &str) -> Vec<String> {
    matches
        .iter()
        .map(|m| {
            let events = m["events"].as_object().expect("events");
            let counts: Vec<String> = events
                .iter()
                .map(|(step, list)| format!("{step}x{}", list.as_array().map_or(0, Vec::len)))
                .collect();
            format!(
                "{}: {}",
                m["key"][key].as_str().unwrap_or("?"),
                counts.join(" ")
            )
        })
        .collect()
}

#[test]
fn brute_force_example_finds_alice_and_dave() {
    let m = run("cep-brute-force-local.yaml");
    assert_eq!(
        summary(&m, "userId"),
        ["alice: failx6 okx1", "dave: failx8 okx1"]
    );
    assert_eq!(m[0]["pattern"], "brute-force");
    assert_eq!(m[0]["start"], 1_795_165_200_000_i64);
    assert_eq!(m[0]["end"], 1_795_165_240_000_i64);
}

#[test]
fn fraud_example_finds_deposits_drained_within_the_hour() {
    let m = run("cep-fraud-local.yaml");
    assert_eq!(
        summary(&m, "account"),
        [
            "acc-1: depositx1 withdrawalsx3",
            "acc-4: depositx1 withdrawalsx2"
        ]
    );
}

#[test]
fn abandoned_cart_example_fires_when_the_half_hour_passes() {
    let m = run("cep-abandoned-cart-local.yaml");
    assert_eq!(summary(&m, "userId"), ["u2: addedx2", "u3: addedx1"]);
}

#[test]
fn cascade_example_finds_only_the_ordered_fast_cascade() {
    let m = run("cep-cascade-failure-local.yaml");
    assert_eq!(summary(&m, "region"), ["eu-west: apix1 cachex1 databasex1"]);
}

#[test]
fn anomaly_example_flags_the_generator_spikes() {
    let m = run("anomaly-local.yaml");
    // The IoT profile spikes about one reading in a thousand (+25 degrees).
    assert!((20..=80).contains(&m.len()), "{} anomalies", m.len());
    for r in &m {
        assert_eq!(r["anomaly"]["method"], "zscore");
        assert_eq!(r["anomaly"]["isAnomaly"], true);
        assert!(r["anomaly"]["score"].as_f64() > Some(6.0), "{r}");
        assert!(r["temperature"].as_f64() > Some(40.0), "a spike: {r}");
    }
}
