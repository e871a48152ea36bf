//! Secrets never reach a log, in any binary. Each service is started at
//! debug level with a planted password, token and bus key, made to use them
//! (right and wrong credentials, a redirect carrying a token, signed frames
//! received), and its whole log is searched for them. (A camera URL's
//! password is the producer's own test, `frame-producer/tests/secrets.rs`.)

use std::time::Duration;

use base64::Engine as _;
use test_support::detector::Detector;
use test_support::director::Director;
use test_support::gateway::Gateway;
use test_support::http;
use test_support::metrics::wait_metric;
use test_support::producer::Producer;
use test_support::recorder::Recorder;
use test_support::wait_for;

const PASSWORD: &str = "Planted-Pw-93xq";
const TOKEN: &str = "Planted-Tok-71kd";
/// A bus key whose hex, and its first half, must never show.
const KEY: &str = "5ec4e75ec4e75ec4e75ec4e75ec4e75ec4e75ec4e75ec4e75ec4e75ec4e75ec4";

#[tokio::test]
async fn no_binary_logs_a_planted_secret() {
    let dir = std::env::temp_dir().join(format!(
        "secrets-{}-{}",
        std::process::id(),
        stream_common::unix_now_ns()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key = dir.join("bus.key");
    std::fs::write(&key, format!("{KEY}\n")).expect("key file");
    let key = key.to_string_lossy().into_owned();
    let debug = ["--log-level", "debug"];
    let credentials = [
        "--auth-user",
        "admin",
        "--auth-password",
        PASSWORD,
        "--auth-token",
        TOKEN,
    ];

    let producer = Producer::start(
        &[
            &["--stream", "cam0", "--fps", "10", "--size", "160x120"][..],
            &["--bus-key-file", &key],
            &debug,
        ]
        .concat(),
    );
    let endpoint = producer.endpoint.as_str();
    let gateway = Gateway::start(
        &[endpoint],
        &[&["--bus-key-file", &key][..], &credentials, &debug].concat(),
        &[],
    );
    let gw = gateway.addr;
    let with_token = format!("/snapshot/cam0?token={TOKEN}");
    wait_for(
        "signed frames at the gateway",
        Duration::from_secs(30),
        || {
            let path = with_token.clone();
            async move {
                let r = http::get(gw, &path).await.ok()?;
                (r.head.status == 200).then_some(())
            }
        },
    )
    .await;
    let basic = |password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}"))
        )
    };
    let right = basic(PASSWORD);
    let wrong = basic(&format!("{PASSWORD}x"));
    let asked = [
        (
            http::request(gw, "GET", "/api/streams", &[("Authorization", &right)]).await,
            200,
        ),
        (
            http::request(gw, "GET", "/api/streams", &[("Authorization", &wrong)]).await,
            401,
        ),
        (
            http::get(gw, &format!("/stream/cam0?fps=1&token={TOKEN}x")).await,
            401,
        ),
    ];
    for (r, want) in asked {
        assert_eq!(r.expect("gateway answers").head.status, want);
    }

    let detector = Detector::start(
        &[endpoint],
        &[&["--bus-key-file", &key][..], &debug].concat(),
    );
    wait_metric(
        detector.metrics,
        "detector_frames_analysed_total",
        &["stream=\"cam0\""],
        1.0,
        Duration::from_secs(60),
    )
    .await;

    let recordings = dir.join("recordings");
    let recorder = Recorder::start(
        endpoint,
        &recordings,
        &[&["--bus-key-file", &key][..], &credentials, &debug].concat(),
    );
    let rec = recorder.addr;
    let listing = format!("/api/recordings?token={TOKEN}");
    wait_for(
        "the recorder to record cam0",
        Duration::from_secs(30),
        || {
            let path = listing.clone();
            async move {
                let r = http::get(rec, &path).await.ok()?;
                (r.head.status == 200 && r.text().contains("cam0")).then_some(())
            }
        },
    )
    .await;
    let refused = http::get(rec, &format!("/api/recordings?token={TOKEN}x")).await;
    assert_eq!(refused.expect("recorder answers").head.status, 401);

    let director = Director::start(
        &gw.to_string(),
        &[&["--auth-token", TOKEN][..], &debug].concat(),
    );
    let d = director.addr;
    let redirect = format!("/stream/cam0?token={TOKEN}");
    wait_for(
        "a redirect from the director",
        Duration::from_secs(20),
        || {
            let path = redirect.clone();
            async move {
                let r = http::get(d, &path).await.ok()?;
                (r.head.status == 307).then_some(())
            }
        },
    )
    .await;
    let pick = http::get(d, &format!("/director/pick?stream=cam0&token={TOKEN}")).await;
    assert_eq!(pick.expect("director answers").head.status, 200);
    let pick = http::get(d, &format!("/director/pick?stream=cam0&token={TOKEN}x")).await;
    assert_eq!(pick.expect("director answers").head.status, 401);

    for proc in [
        &producer.proc,
        &gateway.proc,
        &detector.proc,
        &recorder.proc,
        &director.proc,
    ] {
        let log = proc.log();
        assert!(log.contains("INFO"), "{} logged:\n{log}", proc.name);
        for secret in [PASSWORD, TOKEN, &KEY[..32], &right["Basic ".len()..]] {
            assert!(
                !log.contains(secret),
                "{} logged a planted secret ({secret}):\n{log}",
                proc.name
            );
        }
    }
    // The redirect went into the director's debug log, its token masked.
    let log = director.proc.log();
    assert!(
        log.contains("redirect") && log.contains("token=***"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
