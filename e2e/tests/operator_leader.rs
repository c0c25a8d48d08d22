//! Leader election: of two operators sharing a Lease exactly one leads and
//! reconciles; when the leader is killed (SIGKILL, no goodbye) the standby
//! takes over once the Lease expires — within the lease duration of the
//! kill plus one standby retry period — and reconciles what is applied
//! next; a leader stopped with SIGTERM hands over at once.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tributary_e2e::operator::harness::{Harness, wait_leading};
use tributary_e2e::operator::pipeline::{self, EVERY, generator_pipeline};
use tributary_e2e::operator::process::{Operator, Options};
use tributary_e2e::poll;

const LEASE: Duration = Duration::from_secs(6);
/// The standby's `--retry-period` (the default, 2 s, below `LEASE / 3`).
const RETRY: Duration = Duration::from_secs(2);
/// Apiserver round trips (the standby's read and update of the Lease) and
/// this test's 250 ms poll of the standby's metrics, on a loaded machine.
const SLACK: Duration = Duration::from_millis(1500);
const WAIT: Duration = Duration::from_secs(60);

async fn holder(leases: &Api<Lease>, name: &str) -> Result<Option<String>> {
    Ok(leases
        .get(name)
        .await?
        .spec
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

/// Waits until `op` is standing by: serving `/readyz` and reporting
/// `tributary_operator_leader 0`.
async fn wait_standby(op: &Operator) -> Result<()> {
    poll::until(
        &format!("{} to stand by", op.identity),
        WAIT,
        EVERY,
        || async {
            op.check_alive()?;
            let ready = op.get("/readyz")?.0 == 200;
            let leader = op.metric("tributary_operator_leader")?;
            anyhow::Ok((ready && leader == Some(0.0)).then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow!("{e}\n--- {} log:\n{}", op.identity, op.log_tail(40)))
}

fn reconciles(op: &Operator) -> Result<f64> {
    Ok(op.metric_sum("tributary_operator_reconciles_total")?)
}

#[tokio::test]
async fn one_leader_reconciles_and_a_killed_leader_is_replaced() -> Result<()> {
    let h = Harness::start_with("op-leader", LEASE).await?;
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), &h.release.namespace);
    let lease_name = h.release.lease_name.clone();
    let mut opts = Options::new(&h.namespace, "standby");
    opts.lease_duration = LEASE;
    let standby = Operator::start(&h.release, &opts)?;
    wait_standby(&standby).await?;
    ensure!(holder(&leases, &lease_name).await?.as_deref() == Some("leader"));
    // Liveness does not depend on leading: both answer `/healthz` alike.
    for op in [&h.operator, &standby] {
        let health = op.get("/healthz")?;
        ensure!(
            health == (200, "ok\n".to_owned()),
            "{} /healthz answered {health:?}",
            op.identity
        );
    }

    // Only the leader reconciles.
    h.apply(&generator_pipeline("first", "[]"))?;
    h.wait_ready("first").await?;
    ensure!(
        reconciles(&h.operator)? > 0.0,
        "the leader counted no reconcile"
    );
    ensure!(
        reconciles(&standby)? == 0.0,
        "the standby reconciled:\n{}",
        standby.get("/metrics")?.1
    );
    ensure!(standby.metric("tributary_operator_leader")? == Some(0.0));

    // SIGKILL: the Lease is not released; the standby waits for it to expire.
    h.operator.kill9();
    let killed = Instant::now();
    wait_leading(&standby).await?;
    let took = killed.elapsed();
    ensure!(
        holder(&leases, &lease_name).await?.as_deref() == Some("standby"),
        "the Lease should name the new leader"
    );
    // The leader last renewed at most a renewal interval (LEASE / 3) before
    // the kill; the Lease is valid until LEASE after that renewal, and the
    // standby sees it expired at its next poll, at most RETRY later.
    ensure!(
        took <= LEASE + RETRY + SLACK,
        "takeover took {took:?}: more than the lease duration {LEASE:?} plus one retry period \
         {RETRY:?} (and {SLACK:?} for round trips)"
    );
    ensure!(
        took + SLACK >= LEASE * 2 / 3,
        "takeover after {took:?}: the standby took a Lease renewed less than {LEASE:?} ago"
    );
    eprintln!(
        "takeover after SIGKILL of the leader: {took:?} (lease {LEASE:?}, standby retry period {RETRY:?})"
    );

    h.apply(&generator_pipeline("second", "[]"))?;
    pipeline::wait_condition(&h.pipelines(), "second", "Ready", "True", None, WAIT)
        .await
        .map_err(|e| anyhow!("{e}\n--- standby log:\n{}", standby.log_tail(40)))?;
    ensure!(reconciles(&standby)? > 0.0);

    // SIGTERM: the leader steps down and releases the Lease, so a third
    // operator takes over at its next poll (one retry period), before the
    // Lease would have expired.
    let mut opts = Options::new(&h.namespace, "third");
    opts.lease_duration = LEASE;
    let third = Operator::start(&h.release, &opts)?;
    wait_standby(&third).await?;
    let stopped = Instant::now();
    let status = standby
        .terminate(Duration::from_secs(20))
        .context("the leader did not stop on SIGTERM")?;
    ensure!(
        status.success(),
        "the leader exited with {status} on SIGTERM"
    );
    wait_leading(&third).await?;
    let took = stopped.elapsed();
    ensure!(holder(&leases, &lease_name).await?.as_deref() == Some("third"));
    ensure!(
        took < LEASE,
        "takeover after SIGTERM took {took:?}: the Lease was not released (it expires after {LEASE:?})"
    );
    eprintln!("takeover after SIGTERM of the leader: {took:?}");
    Ok(())
}
