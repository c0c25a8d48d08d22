use std::io::Write;

use serde_json::{Value, json};
use tributary_crds::EnrichStep;

use super::*;

/// A table file in a scratch folder, and an enrich step over it.
fn step(rows: &str, extra: &str) -> (tempfile::TempDir, Enrich) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.jsonl"), rows).unwrap();
    let spec: EnrichStep = serde_yaml_ng::from_str(&format!(
        "{{table: {{file: {{path: users.jsonl}}}}, key: event.userId, as: user{extra}}}"
    ))
    .unwrap();
    let e = Enrich::new(
        "e".into(),
        &spec,
        &crate::expr::env(),
        dir.path(),
        None,
        "s",
    )
    .unwrap();
    (dir, e)
}

fn run(e: &mut Enrich, ids: &[Value]) -> Emit {
    let mut emit = Emit::default();
    let recs = ids
        .iter()
        .map(|id| Record::new(json!({"userId": id}), 0))
        .collect();
    e.process(recs, &mut emit).unwrap();
    emit
}

const ROWS: &str = "{\"id\": \"u1\", \"tier\": \"gold\"}\n\n{\"id\": 2, \"tier\": \"silver\"}\n{\"id\": \"u1\", \"tier\": \"platinum\"}\n";

#[test]
fn attaches_the_latest_row_and_matches_numbers_and_strings() {
    let (_dir, mut e) = step(ROWS, "");
    assert_eq!(e.state_size(), 2, "the later u1 row replaces the first");
    let out = run(&mut e, &[json!("u1"), json!("2"), json!(2)]).out;
    let tiers: Vec<_> = out
        .iter()
        .map(|r| r.value["user"]["tier"].clone())
        .collect();
    assert_eq!(tiers, [json!("platinum"), json!("silver"), json!("silver")]);
    assert_eq!(
        out[0].value["userId"],
        json!("u1"),
        "the record keeps its fields"
    );
}

#[test]
fn a_miss_passes_drops_or_dead_letters_as_configured() {
    let (_d1, mut pass) = step(ROWS, "");
    let emit = run(&mut pass, &[json!("nobody"), Value::Null]);
    assert_eq!(emit.out.len(), 2);
    assert!(emit.out.iter().all(|r| r.value.get("user").is_none()));

    let (_d2, mut drop) = step(ROWS, ", onMiss: drop");
    let emit = run(&mut drop, &[json!("nobody"), json!("u1")]);
    assert_eq!((emit.out.len(), emit.dropped), (1, 1));

    let (_d3, mut dead) = step(ROWS, ", onMiss: deadLetter");
    let emit = run(&mut dead, &[json!("nobody"), json!("u1")]);
    assert_eq!(emit.out.len(), 1);
    assert_eq!(emit.dead.len(), 1);
    assert_eq!(emit.dead[0].error, "no row for key \"nobody\"");
}

#[test]
fn a_changed_file_is_reloaded_on_tick_and_a_broken_one_keeps_the_old_rows() {
    let (dir, mut e) = step(ROWS, "");
    let path = dir.path().join("users.jsonl");
    std::fs::write(&path, "{\"id\": \"u1\", \"tier\": \"bronze\", \"x\": 1}\n").unwrap();
    e.on_tick(0, &mut Emit::default());
    assert_eq!(
        run(&mut e, &[json!("u1")]).out[0].value["user"]["tier"],
        json!("bronze")
    );
    assert_eq!(e.state_size(), 1);

    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"{\"id\": \"u9\", \"tier\n").unwrap();
    drop(f);
    e.on_tick(0, &mut Emit::default());
    assert_eq!(
        run(&mut e, &[json!("u1")]).out[0].value["user"]["tier"],
        json!("bronze")
    );
}

#[test]
fn a_missing_or_bad_table_fails_the_build_naming_the_line() {
    let spec: EnrichStep = serde_yaml_ng::from_str(
        "{table: {file: {path: users.jsonl, keyField: uid}}, key: event.userId, as: user}",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = crate::expr::env();
    let err = Enrich::new("e".into(), &spec, &env, dir.path(), None, "s")
        .err()
        .unwrap();
    assert!(err.to_string().contains("users.jsonl"), "{err}");
    std::fs::write(
        dir.path().join("users.jsonl"),
        "{\"uid\": 1}\n{\"id\": 2}\n",
    )
    .unwrap();
    let err = Enrich::new("e".into(), &spec, &env, dir.path(), None, "s")
        .err()
        .unwrap();
    assert!(err.to_string().contains("users.jsonl:2"), "{err}");
}
