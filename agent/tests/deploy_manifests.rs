//! The manifests of `deploy/`: every document reads as its Kubernetes type with no field
//! unknown to the API (a misspelt field would be dropped silently by a real server), the
//! kustomization lists every file, the permissions are read-only, `kubectl apply
//! --dry-run=client -k deploy/` maps and accepts every object (against the test API server:
//! kubectl needs one to map kinds), and the DaemonSet's capability list is exactly what the
//! agent needs: it starts with those and nothing else (kernel test).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;
use vsteer_testkit::kube_api::{IstioApi, KubeApi};
use vsteer_testkit::{AgentProcess, PinDir, TestCgroup, kernel_tests_enabled};

const VSTEER: &str = env!("CARGO_BIN_EXE_vsteer");

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every document of every manifest, with its file.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = ["", "crds"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(deploy_dir().join(sub)).expect("deploy dir"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("manifest");
        let name = file
            .strip_prefix(deploy_dir())
            .expect("under deploy")
            .display()
            .to_string();
        vsteer_model::yaml::for_each_document(&text, |_, doc| {
            if !doc.is_null() {
                documents.push((name.clone(), serde_json::to_value(doc).expect("json")));
            }
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    documents
}

/// `doc` as `T`, failing on any field the type does not have.
fn strictly<T: serde::de::DeserializeOwned>(file: &str, doc: &Value) -> T {
    let mut unknown = Vec::new();
    let typed = serde_ignored::deserialize(doc.clone(), |path| unknown.push(path.to_string()))
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(unknown.is_empty(), "{file}: unknown fields {unknown:?}");
    typed
}

#[test]
fn every_manifest_reads_as_its_kubernetes_type_with_no_unknown_field() {
    let documents = documents();
    let mut kinds = Vec::new();
    for (file, doc) in &documents {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "Namespace" => drop(strictly::<Namespace>(file, doc)),
            "ServiceAccount" => drop(strictly::<ServiceAccount>(file, doc)),
            "ClusterRole" => {
                let role: ClusterRole = strictly(file, doc);
                for rule in role.rules.unwrap_or_default() {
                    assert_eq!(rule.verbs, ["get", "list", "watch"], "{file}: read-only");
                }
            }
            "ClusterRoleBinding" => drop(strictly::<ClusterRoleBinding>(file, doc)),
            "DaemonSet" => drop(strictly::<DaemonSet>(file, doc)),
            "CustomResourceDefinition" => {
                let crd: CustomResourceDefinition = strictly(file, doc);
                let storage: Vec<_> = crd.spec.versions.iter().filter(|v| v.storage).collect();
                assert_eq!(storage.len(), 1, "{file}: one storage version");
            }
            other => panic!("{file}: unexpected kind {other}"),
        }
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "DaemonSet",
            "Namespace",
            "ServiceAccount"
        ]
    );
    // The two kustomizations apply every file: the CRDs apart (for clusters without Istio).
    for (file, _) in &documents {
        let (dir, name) = match file.split_once('/') {
            Some((dir, name)) => (dir, name),
            None => ("", file.as_str()),
        };
        let kustomization = deploy_dir().join(dir).join("kustomization.yaml");
        let text = std::fs::read_to_string(&kustomization).expect("kustomization");
        assert!(
            text.contains(&format!("- {name}\n")),
            "{} does not list {name}",
            kustomization.display()
        );
    }
}

/// What the DaemonSet adds to the agent's capabilities.
fn daemonset_capabilities() -> Vec<String> {
    let (file, doc) = documents()
        .into_iter()
        .find(|(_, d)| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let daemonset: DaemonSet = strictly(&file, &doc);
    let pod = daemonset
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec");
    let context = pod.containers[0]
        .security_context
        .clone()
        .expect("securityContext");
    assert_eq!(context.privileged, Some(false));
    let capabilities = context.capabilities.expect("capabilities");
    assert_eq!(capabilities.drop, Some(vec!["ALL".to_string()]));
    capabilities.add.unwrap_or_default()
}

#[test]
fn kubectl_maps_and_accepts_every_manifest_in_a_client_dry_run() {
    let kubectl = match Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
    {
        Ok(out) if out.status.success() => "kubectl",
        _ if std::env::var("VSTEER_REQUIRE_KUBECTL").is_ok_and(|v| v == "1") => {
            panic!("kubectl is required (VSTEER_REQUIRE_KUBECTL=1) but not installed")
        }
        _ => {
            eprintln!(
                "\n*** SKIPPED: kubectl is not installed (cargo xtask test installs it) ***\n"
            );
            return;
        }
    };
    let api = KubeApi::start(IstioApi::V1).expect("test API server");
    let kubeconfig = tempfile::NamedTempFile::new().expect("kubeconfig");
    api.write_kubeconfig(kubeconfig.path()).expect("kubeconfig");
    // Validation against the server's OpenAPI documents needs a real API server; the
    // documents' schemas are checked by the test above instead.
    let mut accepted = 0;
    for dir in [deploy_dir(), deploy_dir().join("crds")] {
        let out = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig.path())
            .args(["apply", "--dry-run=client", "--validate=false", "-k"])
            .arg(&dir)
            .output()
            .expect("kubectl");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{}: {stdout}\n{stderr}",
            dir.display()
        );
        accepted += stdout.lines().filter(|l| l.ends_with("(dry run)")).count();
    }
    assert_eq!(accepted, documents().len());
}

/// The agent starts with the DaemonSet's capabilities and no others (setpriv drops the rest
/// from the bounding set, as the container runtime does).
#[test]
fn the_daemonsets_capabilities_are_all_the_agent_needs() {
    if !kernel_tests_enabled("the_daemonsets_capabilities_are_all_the_agent_needs") {
        return;
    }
    let capabilities = daemonset_capabilities();
    assert_eq!(capabilities, ["BPF", "PERFMON", "NET_ADMIN"]);
    let bounding = std::iter::once("-all".to_string())
        .chain(
            capabilities
                .iter()
                .map(|c| format!("+{}", c.to_lowercase())),
        )
        .collect::<Vec<_>>()
        .join(",");
    let cgroup = TestCgroup::new().expect("cgroup");
    let pins = PinDir::new();
    let placement = vsteer_testkit::agent::RunPlacement {
        cgroup: cgroup.path(),
        pin_dir: pins.path(),
        proxy_addr: "127.0.0.1:0",
        admin_addr: "off",
    };
    let mut args: Vec<std::ffi::OsString> = vec![
        format!("--bounding-set={bounding}").into(),
        "--inh-caps=-all".into(),
        "--".into(),
        VSTEER.into(),
    ];
    args.extend(vsteer_testkit::agent::run_args(&placement));
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let agent = AgentProcess::start(Path::new("setpriv"), &args, Duration::from_secs(30))
        .expect("the agent starts with the DaemonSet's capabilities");
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).expect("status");
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("CapEff");
    // CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39): nothing else.
    assert_eq!(
        effective,
        (1 << 12) | (1 << 38) | (1 << 39),
        "{effective:x}"
    );
}
