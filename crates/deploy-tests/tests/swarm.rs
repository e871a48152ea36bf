//! `deploy/swarm/stack.yml` on a real Docker Swarm: the engine joins a
//! one-node swarm, the stack runs a producer, three gateway replicas and
//! stream-director; viewers on the stack's network are redirected to the
//! replicas and stream from them directly, spread over all three; a replica
//! killed with SIGKILL drops out and new viewers go to the others. The
//! many-host override, and HTTPS from Docker secrets on top of it, are checked
//! to merge; then the stack is deployed again in that form with HTTPS
//! (secrets made from make-cert.sh files): the director redirects over TLS
//! to an https:// gateway on the node's port, the stream plays over TLS, and
//! both services are healthy by their TLS health checks. The engine is left
//! as found: stack removed, swarm left (its secrets with it), the networks
//! Swarm made removed.
//!
//! Skips loudly without a Docker engine (fails under CI), and also when the
//! engine is already part of a swarm, which this test must not touch.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use test_support::docker::{self, APP_IMAGE, BASE_IMAGE};
use test_support::http;
use test_support::process::bin_path;
use test_support::{free_port, wait_for};

mod common;

const FPS: f64 = 15.0;

fn swarm_state() -> String {
    docker::docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
}

fn networks() -> Vec<String> {
    docker::docker(&["network", "ls", "--format", "{{.Name}}"])
        .lines()
        .map(String::from)
        .collect()
}

/// Leaves the swarm on drop (and removes what joining it created), so a
/// failing test still leaves the engine as it found it.
struct Swarm {
    stack: String,
    networks_before: Vec<String>,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for svc in ["stream-director", "stream-gateway", "frame-producer"] {
                let name = format!("{}_{svc}", self.stack);
                if let Ok(logs) =
                    docker::try_docker(&["service", "logs", "--tail", "30", &name], &[])
                {
                    eprintln!("----- {name} -----\n{logs}");
                }
                if let Ok(ps) = docker::try_docker(&["service", "ps", "--no-trunc", &name], &[]) {
                    eprintln!("{ps}");
                }
            }
        }
        let _ = docker::try_docker(&["stack", "rm", &self.stack], &[]);
        // Tasks stop before the stack's network can go.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let left = docker::try_docker(
                &[
                    "ps",
                    "-aq",
                    "--filter",
                    &format!("label=com.docker.stack.namespace={}", self.stack),
                ],
                &[],
            )
            .unwrap_or_default();
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = docker::try_docker(&["swarm", "leave", "--force"], &[]);
        // Joining made docker_gwbridge (and ingress, gone with the swarm).
        for net in networks() {
            if !self.networks_before.contains(&net) && net == "docker_gwbridge" {
                let _ = docker::try_docker(&["network", "rm", &net], &[]);
            }
        }
    }
}

/// `docker stack config` of stack.yml with `overrides` contains every one of `want`.
fn assert_merges(overrides: &[&str], env: &[(&str, &str)], want: &[&str]) {
    let mut args = vec!["stack", "config", "-c", "deploy/swarm/stack.yml"];
    for o in overrides {
        args.extend(["-c", o]);
    }
    let merged = docker::docker_env(&args, env);
    for w in want {
        assert!(
            merged.contains(w),
            "{overrides:?} merged lacks {w:?}:\n{merged}"
        );
    }
}

/// mjpeg-load in a container on the stack's network: viewers as the
/// director's clients, following its redirects to the replicas.
fn viewers_on_the_stack_network(network: &str, clients: usize) -> serde_json::Value {
    let load = bin_path("mjpeg-load");
    let mount = format!("{}:/usr/local/bin/mjpeg-load:ro", load.display());
    let out = docker::docker(&[
        "run",
        "--rm",
        "--network",
        network,
        "-v",
        &mount,
        BASE_IMAGE,
        "mjpeg-load",
        "--addr",
        "stream-director:8080",
        "--path",
        "/stream/cam0",
        "--clients",
        &clients.to_string(),
        "--warmup",
        "1",
        "--duration",
        "3",
    ]);
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("mjpeg-load output {out:?}: {e}"))
}

async fn director_ready_gateways(addr: SocketAddr) -> Option<Vec<String>> {
    let r = http::get(addr, "/director/gateways").await.ok()?;
    let v: serde_json::Value = serde_json::from_str(&r.text()).ok()?;
    Some(
        v["gateways"]
            .as_array()?
            .iter()
            .filter(|g| g["ready"] == true)
            .filter_map(|g| g["instance"].as_str().map(String::from))
            .collect(),
    )
}

/// The stack deployed again in its many-host form with HTTPS from Docker
/// secrets (deploy/swarm/tls.yml): the director serves HTTPS, checks the
/// gateway over TLS and sends a stream to it at `https://{node}:PORT`,
/// where it plays over TLS; both are healthy by their TLS health checks.
async fn https_from_secrets(stack: &str, env: &[(&str, &str)]) {
    let node = docker::docker(&["info", "--format", "{{.Name}}"])
        .trim()
        .to_string();
    let certs = common::make_certs(
        "swarm-certs",
        &["localhost", "127.0.0.1", "tasks.stream-gateway", &node],
    );
    let ca = certs.join("ca.pem");
    let mut env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
    for (var, file) in [
        ("TLS_CERT_SECRET", "cert.pem"),
        ("TLS_KEY_SECRET", "key.pem"),
        ("TLS_CA_SECRET", "ca.pem"),
    ] {
        let name = format!("{stack}_tls_{}", file.trim_end_matches(".pem"));
        let path = certs.join(file).display().to_string();
        docker::docker(&["secret", "create", &name, &path]);
        env.push((var, name));
    }
    let public_port = free_port();
    env.push(("GATEWAY_PUBLIC_PORT", public_port.to_string()));
    // One gateway per node, and this swarm has one node.
    env.retain(|(k, _)| *k != "GATEWAY_REPLICAS");
    env.push(("GATEWAY_REPLICAS", "1".to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let t = Instant::now();
    docker::docker_env(
        &[
            "stack",
            "deploy",
            "-c",
            "deploy/swarm/stack.yml",
            "-c",
            "deploy/swarm/public-gateways.yml",
            "-c",
            "deploy/swarm/tls.yml",
            stack,
        ],
        &env,
    );
    let port: u16 = env
        .iter()
        .find(|(k, _)| *k == "HTTP_PORT")
        .and_then(|(_, v)| v.parse().ok())
        .expect("HTTP_PORT");
    let director = SocketAddr::from(([127, 0, 0, 1], port));
    let want = format!(":{public_port}/stream/cam0");
    let location = wait_for(
        "the HTTPS director redirecting to an https:// gateway",
        Duration::from_secs(120),
        || {
            let (ca, want) = (ca.clone(), want.clone());
            async move {
                let r = common::https_get(&ca, director, "/stream/cam0").await?;
                let location = r.head.header("location")?.to_string();
                (r.head.status == 307
                    && location.starts_with("https://")
                    && location.ends_with(&want))
                .then_some(location)
            }
        },
    )
    .await;
    eprintln!(
        "HTTPS stack redirecting to {location} {:?} after the deploy",
        t.elapsed()
    );
    let gateway = SocketAddr::from(([127, 0, 0, 1], public_port));
    let s = common::https_connect(&ca, gateway)
        .await
        .expect("TLS to the gateway");
    let conn = http::Connection::request_on(s, gateway, "GET", "/stream/cam0", &[], b"")
        .await
        .expect("stream over TLS");
    let mut r = http::MjpegReader::from_connection(conn, "/stream/cam0").expect("MJPEG over TLS");
    for _ in 0..5 {
        r.next_frame_within(Duration::from_secs(5))
            .await
            .expect("a frame over TLS");
    }
    // Swarm runs the health checks: both services' tasks turn healthy.
    for svc in ["stream-director", "stream-gateway"] {
        let label = format!("label=com.docker.swarm.service.name={stack}_{svc}");
        wait_for(
            &format!("{svc} healthy over TLS"),
            Duration::from_secs(60),
            || {
                let label = label.clone();
                async move {
                    let ids = docker::docker(&[
                        "ps",
                        "-q",
                        "--filter",
                        &label,
                        "--filter",
                        "health=healthy",
                    ]);
                    (!ids.trim().is_empty()).then_some(())
                }
            },
        )
        .await;
    }
    let _ = std::fs::remove_dir_all(&certs);
}

#[tokio::test]
async fn swarm_stack_redirects_viewers_to_gateway_replicas() {
    if docker::require("the Swarm stack").is_none() {
        return;
    }
    if swarm_state() != "inactive" {
        eprintln!(
            "\n!!!!! SKIPPED: this engine is already in a swarm ({}); the Swarm stack was NOT tested !!!!!\n",
            swarm_state()
        );
        return;
    }
    docker::build_images();
    let port = free_port();
    let stack = format!("mjpegtest{}", std::process::id());
    let env = [
        ("APP_IMAGE", APP_IMAGE.to_string()),
        ("HTTP_PORT", port.to_string()),
        ("PRODUCER_FPS", FPS.to_string()),
        ("GATEWAY_REPLICAS", "3".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // The many-host form merges onto the base and means what it says, and
    // so does HTTPS from Docker secrets on top of it.
    assert_merges(
        &["deploy/swarm/public-gateways.yml"],
        &env,
        &[
            "max_replicas_per_node: 1",
            "order: stop-first",
            "mode: host",
            "DIRECTOR_PUBLIC_URL: http://{instance}:8081",
            "GATEWAY_INSTANCE_ID: '{{.Node.Hostname}}'",
        ],
    );
    assert_merges(
        &["deploy/swarm/public-gateways.yml", "deploy/swarm/tls.yml"],
        &env,
        &[
            "GATEWAY_TLS_CERT: /run/secrets/tls.crt",
            "GATEWAY_TLS_KEY: /run/secrets/tls.key",
            "DIRECTOR_TLS_CERT: /run/secrets/tls.crt",
            "DIRECTOR_GATEWAY_CA: /run/secrets/ca.crt",
            "DIRECTOR_PUBLIC_URL: https://{instance}:8081",
            "name: mjpeg_tls_key",
            "uid: \"10001\"",
        ],
    );

    let swarm = Swarm {
        stack: stack.clone(),
        networks_before: networks(),
    };
    // Loopback: nothing of this swarm is reachable from outside the machine.
    docker::docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    docker::docker_env(
        &["stack", "deploy", "-c", "deploy/swarm/stack.yml", &stack],
        &env,
    );
    let director = SocketAddr::from(([127, 0, 0, 1], port));
    let ready = wait_for(
        "the director to see three ready gateway replicas",
        Duration::from_secs(90),
        || async move {
            director_ready_gateways(director)
                .await
                .filter(|g| g.len() == 3)
        },
    )
    .await;
    eprintln!("director sees {ready:?}");

    // Small requests through the director's published port (host mode).
    let api = http::get(director, "/api/streams").await.expect("api");
    assert_eq!(api.head.status, 200);
    assert!(api.text().contains("cam0"), "{}", api.text());

    let network = format!("{stack}_mjpeg");
    let report = viewers_on_the_stack_network(&network, 30);
    eprintln!("30 viewers on the stack network: {report}");
    assert_eq!(report["connected"], 30, "{report}");
    assert_eq!(
        report["redirected"], 30,
        "every viewer was redirected: {report}"
    );
    assert_eq!(report["parse_errors"], 0, "{report}");
    assert!(
        report["fps_min"].as_f64().unwrap_or(0.0) > FPS * 0.8,
        "{report}"
    );
    let spread = report["instances"].as_object().cloned().unwrap_or_default();
    assert_eq!(spread.len(), 3, "viewers on all three replicas: {report}");
    assert!(
        spread.values().all(|n| n.as_u64() == Some(10)),
        "round robin spreads evenly: {report}"
    );

    // kill -9 one replica: it drops out of the director's choice at once,
    // and new viewers all stream (Swarm starts a replacement meanwhile).
    let victim = ready[0].clone();
    let container = docker::docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.task.name={victim}"),
    ]);
    assert!(!container.is_empty(), "no container for task {victim}");
    docker::docker(&["kill", "-s", "KILL", &container]);
    let killed = Instant::now();
    wait_for(
        "the killed replica out of the director's choice",
        Duration::from_secs(3),
        || {
            let victim = victim.clone();
            async move {
                let g = director_ready_gateways(director).await?;
                (!g.contains(&victim)).then_some(())
            }
        },
    )
    .await;
    eprintln!("killed replica dropped after {:?}", killed.elapsed());
    let report = viewers_on_the_stack_network(&network, 20);
    assert_eq!(report["connected"], 20, "after the kill: {report}");
    assert_eq!(report["parse_errors"], 0, "{report}");
    let spread = report["instances"].as_object().cloned().unwrap_or_default();
    assert!(
        !spread.contains_key(&victim),
        "a viewer was sent to the killed replica: {report}"
    );

    https_from_secrets(&stack, &env).await;

    drop(swarm);
    assert_eq!(swarm_state(), "inactive", "the engine left the swarm");
    let left = docker::docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.stack.namespace={stack}"),
    ]);
    assert!(left.is_empty(), "containers left: {left}");
}
