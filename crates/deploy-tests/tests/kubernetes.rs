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
    let out = Command::new("python3")
        .args(["-c", RULES])
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
    if !validator_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but kubernetes-validate is missing (scripts/setup.sh installs it)"
        );
        eprintln!(
            "\n!!!!! SKIPPED: kubernetes-validate is not installed; the Kubernetes manifests were NOT validated !!!!!\n"
        );
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
