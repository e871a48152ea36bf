//! `--healthcheck` of a gateway and a director serving HTTPS (what the
//! compose file, the Swarm stack and the image run): healthy over TLS when
//! the running instance presents the certificate in `--tls-cert`, unhealthy
//! when it presents another one, and the plain probe alone cannot tell.

use std::time::Duration;

use test_support::director::Director;
use test_support::gateway::Gateway;
use test_support::process::bin_path;
use test_support::producer::Producer;
use test_support::tls::TestCa;
use test_support::wait_for;

/// Runs `stream-gateway --healthcheck` with `args`; true on exit code 0.
async fn healthcheck(args: &[&str]) -> bool {
    healthcheck_of("stream-gateway", args).await
}

/// Runs `BIN --healthcheck` with `args`; true on exit code 0.
async fn healthcheck_of(bin: &str, args: &[&str]) -> bool {
    let out = tokio::process::Command::new(bin_path(bin))
        .arg("--healthcheck")
        .args(args)
        .output()
        .await
        .expect("running the health check");
    out.status.success()
}

#[tokio::test]
async fn healthcheck_speaks_tls_to_its_own_https_listener() {
    let producer = Producer::start(&["--fps", "5", "--size", "160x120"]);
    let ca = TestCa::new();
    let (cert, key) = (
        ca.cert().display().to_string(),
        ca.key().display().to_string(),
    );
    let tls = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    let gateway = Gateway::start(&[producer.endpoint.as_str()], &tls, &[]);
    let listen = gateway.addr.to_string();
    let with_tls = [&["--listen", listen.as_str()][..], &tls[..]].concat();

    wait_for("healthy over TLS", Duration::from_secs(30), || async {
        healthcheck(&with_tls).await.then_some(())
    })
    .await;
    // The plain probe gets the TLS port's refusal.
    assert!(
        !healthcheck(&["--listen", listen.as_str()]).await,
        "a plain probe of the TLS port passed"
    );
    // Another certificate (another CA's) answering is not our instance.
    let other = TestCa::new();
    let (ocert, okey) = (
        other.cert().display().to_string(),
        other.key().display().to_string(),
    );
    assert!(
        !healthcheck(&[
            "--listen",
            &listen,
            "--tls-cert",
            &ocert,
            "--tls-key",
            &okey
        ])
        .await,
        "healthy while another certificate answers"
    );
    // The director over HTTPS, the same way.
    let director = Director::start(&listen, &tls);
    let dlisten = director.addr.to_string();
    let director_tls = [&["--listen", dlisten.as_str()][..], &tls[..]].concat();
    wait_for(
        "the director healthy over TLS",
        Duration::from_secs(30),
        || async {
            healthcheck_of("stream-director", &director_tls)
                .await
                .then_some(())
        },
    )
    .await;
    assert!(
        !healthcheck_of("stream-director", &["--listen", dlisten.as_str()]).await,
        "a plain probe of the director's TLS port passed"
    );
    // Nothing listening: unhealthy, promptly.
    drop(director);
    assert!(!healthcheck_of("stream-director", &director_tls).await);
    drop(gateway);
    wait_for(
        "unhealthy once stopped",
        Duration::from_secs(10),
        || async { (!healthcheck(&with_tls).await).then_some(()) },
    )
    .await;
}
