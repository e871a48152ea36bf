//! The Kubernetes manifests in `deploy/kubernetes/` validated offline
//! against the Kubernetes API schemas (`kubernetes-validate`, which bundles
//! them; installed by scripts/setup.sh), strictly (unknown fields fail), plus
//! this project's own rules for every workload: non-root, read-only root
//! filesystem, no privilege escalation, health probes, resource limits. A
//! broken copy must fail, so the check is known to bite.
//!
//! Without the validator it skips loudly, except under CI.

use std::path::{Path, PathBuf};
use std::process::Command;

use test_support::process::workspace_root;

const MANIFESTS: [&str; 4] = [
    "producer.yaml",
    "gateway.yaml",
    "director.yaml",
    "recorder.yaml",
];

fn manifests() -> Vec<PathBuf> {
    let dir = workspace_root().join("deploy/kubernetes");
    MANIFESTS.iter().map(|m| dir.join(m)).collect()
}

fn validator_available() -> bool {
    Command::new("python3")
        .args(["-c", "import kubernetes_validate"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `kubernetes-validate --strict` on `files`: (success, output).
fn validate(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .args(files)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The project's rules, checked with PyYAML (a dependency of the validator).
const RULES: &str = r#"
import sys, yaml
bad, kinds = [], []
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        kinds.append(f"{doc['kind']}/{doc['metadata']['name']}")
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        name = doc["metadata"]["name"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            bad.append(f"{name}: pod not runAsNonRoot")
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            for key, want in (("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False)):
                if sc.get(key) is not want:
                    bad.append(f"{name}/{c['name']}: {key} is not {want}")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                bad.append(f"{name}/{c['name']}: capabilities not dropped")
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    bad.append(f"{name}/{c['name']}: no {probe}")
            limits = c.get("resources", {}).get("limits", {})
            if not {"cpu", "memory"} <= set(limits):
                bad.append(f"{name}/{c['name']}: cpu and memory limits missing")
print(" ".join(sorted(kinds)))
if bad:
    print("\n".join(bad))
    sys.exit(1)
"#;

fn rules(files: &[PathBuf]) -> (bool, String) {
    python(RULES, files)
}

/// `python3 -c script files...`: (success, output).
fn python(script: &str, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new("python3")
        .args(["-c", script])
        .args(files)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// False (after saying so loudly) when the validator is missing; under CI
/// that fails instead.
fn validator_or_skip(what: &str) -> bool {
    if validator_available() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but kubernetes-validate is missing (scripts/setup.sh installs it)"
    );
    eprintln!(
        "\n!!!!! SKIPPED: kubernetes-validate is not installed; {what} NOT validated !!!!!\n"
    );
    false
}

fn broken_copy(dir: &Path, from: &Path, edit: impl Fn(&str) -> String) -> PathBuf {
    let text = std::fs::read_to_string(from).expect("manifest");
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changed nothing");
    let to = dir.join(from.file_name().expect("name"));
    std::fs::write(&to, edited).expect("write");
    to
}

#[test]
fn kubernetes_manifests_validate_offline() {
    if !validator_or_skip("the Kubernetes manifests were") {
        return;
    }
    let files = manifests();
    let (ok, out) = validate(&files);
    assert!(ok, "kubernetes-validate failed:\n{out}");
    for file in MANIFESTS {
        assert!(out.contains(file), "{file} not validated:\n{out}");
    }
    let (ok, out) = rules(&files);
    assert!(ok, "manifests break the project's rules:\n{out}");
    for kind in [
        "Deployment/frame-producer",
        "Deployment/stream-gateway",
        "Deployment/stream-director",
        "Service/frame-producer",
        "Service/stream-gateway",
        "Service/stream-director",
    ] {
        assert!(out.contains(kind), "no {kind}: {out}");
    }

    // Both checks bite: a misspelt field fails the schema, a root container the rules.
    let dir = test_support::media::temp_dir("k8s-broken");
    let misspelt = broken_copy(&dir, &files[1], |t| {
        t.replacen("readinessProbe:", "readynessProbe:", 1)
    });
    let (ok, out) = validate(std::slice::from_ref(&misspelt));
    assert!(!ok, "a misspelt field passed validation:\n{out}");
    let rooted = broken_copy(&dir, &files[2], |t| {
        t.replacen("runAsNonRoot: true", "runAsNonRoot: false", 1)
    });
    let (ok, out) = rules(std::slice::from_ref(&rooted));
    assert!(!ok, "a root pod passed the rules:\n{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the HTTPS overlay must do to the rendered manifests: both
/// workloads mount the `mjpeg-tls` Secret where their TLS flags point,
/// probe over HTTPS, the directors check the gateways against its CA and
/// redirect to https://, and their Service listens on 443.
const TLS_RULES: &str = r#"
import sys, yaml
docs = {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(open(sys.argv[1]))}
bad = []
def container(name):
    pod = docs[f"Deployment/{name}"]["spec"]["template"]["spec"]
    return pod, pod["containers"][0]
for name, prefix in (("stream-gateway", "GATEWAY"), ("stream-director", "DIRECTOR")):
    pod, c = container(name)
    env = {e["name"]: e.get("value") for e in c["env"]}
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    secret = {v["name"]: v.get("secret", {}).get("secretName") for v in pod.get("volumes", [])}
    if secret.get("tls") != "mjpeg-tls" or mounts.get("tls") != "/etc/mjpeg-tls":
        bad.append(f"{name}: the mjpeg-tls Secret is not mounted at /etc/mjpeg-tls")
    for flag, file in (("TLS_CERT", "tls.crt"), ("TLS_KEY", "tls.key")):
        if env.get(f"{prefix}_{flag}") != f"/etc/mjpeg-tls/{file}":
            bad.append(f"{name}: {prefix}_{flag} is {env.get(prefix + '_' + flag)}")
    for probe in ("livenessProbe", "readinessProbe"):
        if c[probe]["httpGet"].get("scheme") != "HTTPS":
            bad.append(f"{name}: {probe} not over HTTPS")
    if pod.get("securityContext", {}).get("fsGroup") != 10001:
        bad.append(f"{name}: the Secret's files are not readable by the pod's group")
    if name == "stream-director":
        if env.get("DIRECTOR_GATEWAY_CA") != "/etc/mjpeg-tls/ca.crt":
            bad.append("director: does not check the gateways against ca.crt")
        if not str(env.get("DIRECTOR_PUBLIC_URL", "")).startswith("https://"):
            bad.append(f"director: redirects to {env.get('DIRECTOR_PUBLIC_URL')}")
ports = docs["Service/stream-director"]["spec"]["ports"]
if [p["port"] for p in ports] != [443]:
    bad.append(f"director Service ports {ports}")
print("\n".join(bad) or "ok")
sys.exit(1 if bad else 0)
"#;

/// `kubectl kustomize DIR` rendered into `to`; `None` without kubectl.
fn kustomize(dir: &Path, to: &Path) -> Option<()> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(to, &out.stdout).expect("write rendered manifests");
    Some(())
}

#[test]
fn kubernetes_tls_overlay_validates_offline() {
    if !validator_or_skip("the HTTPS overlay was") {
        return;
    }
    let dir = test_support::media::temp_dir("k8s-tls");
    let rendered = dir.join("rendered.yaml");
    if kustomize(&workspace_root().join("deploy/kubernetes-tls"), &rendered).is_none() {
        eprintln!(
            "\n!!!!! SKIPPED: no kubectl (kustomize); the HTTPS overlay was NOT rendered or validated !!!!!\n"
        );
        return;
    }
    let files = [rendered.clone()];
    let (ok, out) = validate(&files);
    assert!(
        ok,
        "kubernetes-validate failed on the HTTPS overlay:\n{out}"
    );
    let (ok, out) = rules(&files);
    assert!(ok, "the HTTPS overlay breaks the project's rules:\n{out}");
    let check = |file: &Path| python(TLS_RULES, &[file.to_path_buf()]);
    let (ok, out) = check(&rendered);
    assert!(ok, "the HTTPS overlay does not do what it says:\n{out}");
    // The check bites: the plain manifests fail it.
    let plain = dir.join("plain.yaml");
    kustomize(&workspace_root().join("deploy/kubernetes"), &plain).expect("kubectl");
    let (ok, out) = check(&plain);
    assert!(
        !ok && out.contains("not over HTTPS"),
        "plain manifests passed:\n{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
