use super::*;

fn lease(holder: Option<&str>, renewed: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta::default(),
        spec: Some(LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        }),
    }
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

#[test]
fn a_missing_lease_is_created_and_ours_is_renewed() {
    let mut obs = None;
    let at = Instant::now();
    assert_eq!(decide(None, "a", t(0), at, &mut obs), Decision::Create);
    let l = lease(Some("a"), t(0));
    assert_eq!(decide(Some(&l), "a", t(1), at, &mut obs), Decision::Renew);
}

#[test]
fn a_live_lease_of_another_holder_is_left_alone() {
    let mut obs = None;
    let l = lease(Some("b"), t(0));
    let d = decide(Some(&l), "a", t(10), Instant::now(), &mut obs);
    assert_eq!(d, Decision::Wait("b".to_owned()));
}

#[test]
fn a_released_or_expired_lease_is_taken_over() {
    let mut obs = None;
    let at = Instant::now();
    let free = lease(None, t(0));
    assert_eq!(
        decide(Some(&free), "a", t(1), at, &mut obs),
        Decision::TakeOver
    );
    let stale = lease(Some("b"), t(0));
    assert_eq!(
        decide(Some(&stale), "a", t(16), at, &mut obs),
        Decision::TakeOver
    );
}

#[test]
fn a_record_unchanged_for_a_lease_duration_expires_even_with_a_skewed_clock() {
    let mut obs = None;
    let start = Instant::now();
    // The holder's clock runs ahead: by the wall clock it looks fresh.
    let l = lease(Some("b"), t(1000));
    assert!(matches!(
        decide(Some(&l), "a", t(0), start, &mut obs),
        Decision::Wait(_)
    ));
    let later = start + Duration::from_secs(16);
    assert_eq!(
        decide(Some(&l), "a", t(16), later, &mut obs),
        Decision::TakeOver
    );
    // A renewal resets what was observed.
    let renewed = lease(Some("b"), t(1016));
    assert!(matches!(
        decide(Some(&renewed), "a", t(16), later, &mut obs),
        Decision::Wait(_)
    ));
}
