//! Services started together (as `scripts/run.sh` and compose do) come up
//! in any order: a gateway started before its producer binds connects once
//! the producer is there, and says nothing alarming meanwhile.

use std::time::Duration;

use test_support::gateway::Gateway;
use test_support::process::Proc;
use test_support::{free_port, http, wait_for};

#[tokio::test]
async fn a_gateway_started_before_its_producer_connects_without_a_warning() {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let g = Gateway::start(&[&endpoint], &[], &[]);
    let addr = g.addr;
    // The gateway is up and already trying to reach the absent producer.
    wait_for("gateway alive", Duration::from_secs(20), || async move {
        (http::get(addr, "/healthz").await.ok()?.head.status == 200).then_some(())
    })
    .await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let _producer = Proc::start(
        "frame-producer",
        &["--bind", &endpoint, "--metrics-listen", &metrics],
        &[],
    );
    wait_for("gateway ready", Duration::from_secs(20), || async move {
        (http::get(addr, "/readyz").await.ok()?.head.status == 200).then_some(())
    })
    .await;
    let log = g.proc.log();
    assert!(
        !log.contains("cannot reach producer"),
        "a normal start warned:\n{log}"
    );
}
