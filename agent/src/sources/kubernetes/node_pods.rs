//! The pods of this node (a watch of pods with `spec.nodeName` = the node), each with its
//! namespace, labels and cgroup: the directory kubelet made for it under the cgroup v2 root
//! (systemd or cgroupfs driver, by QoS class), and that directory's cgroup id. A socket's
//! owner sits in a container's cgroup below it, so the kernel programs find the pod by that
//! id among the owner's ancestors (`bpf_get_current_ancestor_cgroup_id` at the pod's level).
//! The map source-aware routing and exportTo will look clients up in; today `vsteer status`
//! shows it.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kube::runtime::watcher::Event;
use serde::{Deserialize, Serialize};

use super::cluster::Object;
use super::registry::ObjectKey;

/// One pod of the node, as `vsteer status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `Guaranteed`, `Burstable` or `BestEffort`; empty while the API has not set it.
    pub qos_class: String,
    pub labels: BTreeMap<String, String>,
    /// Its cgroup directory, once kubelet has made it.
    pub cgroup: Option<PathBuf>,
    /// The directory's cgroup id (its inode number): an ancestor of its containers' cgroups.
    pub cgroup_id: Option<u64>,
}

/// The node's pods, by namespace and name.
#[derive(Debug)]
pub struct NodePods {
    /// The cgroup v2 directory kubelet's `kubepods` hierarchy is under (the node's root).
    root: PathBuf,
    pods: BTreeMap<ObjectKey, NodePod>,
    relisting: Option<Vec<Object>>,
}

impl NodePods {
    pub fn new(root: &Path) -> NodePods {
        NodePods {
            root: root.to_path_buf(),
            pods: BTreeMap::new(),
            relisting: None,
        }
    }

    /// Takes one event of the node's pod watch (a relist replaces every pod).
    pub fn event(&mut self, event: Event<Object>) {
        match event {
            Event::Init => self.relisting = Some(Vec::new()),
            Event::InitApply(object) => match &mut self.relisting {
                Some(listed) => listed.push(object),
                None => self.upsert(&object),
            },
            Event::InitDone => {
                self.pods.clear();
                for object in self.relisting.take().unwrap_or_default() {
                    self.upsert(&object);
                }
            }
            Event::Apply(object) => self.upsert(&object),
            Event::Delete(object) => {
                self.pods.remove(&ObjectKey::of(&object.meta));
            }
        }
    }

    /// Looks again for the cgroups not found yet (kubelet makes a pod's cgroup after the pod
    /// is bound to the node, and so after the watch has seen it).
    pub fn resolve(&mut self) {
        for pod in self.pods.values_mut().filter(|p| p.cgroup.is_none()) {
            (pod.cgroup, pod.cgroup_id) = find_cgroup(&self.root, &pod.uid, &pod.qos_class);
        }
    }

    pub fn pods(&self) -> Vec<NodePod> {
        self.pods.values().cloned().collect()
    }

    fn upsert(&mut self, object: &Object) {
        let key = ObjectKey::of(&object.meta);
        let uid = object.meta.uid.clone().unwrap_or_default();
        let qos_class = object.body["status"]["qosClass"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (cgroup, cgroup_id) = match self.pods.get(&key) {
            // A pod's uid and QoS class never change: its cgroup stays where it was found.
            Some(known) if known.uid == uid && known.cgroup.is_some() => {
                (known.cgroup.clone(), known.cgroup_id)
            }
            _ => find_cgroup(&self.root, &uid, &qos_class),
        };
        let pod = NodePod {
            namespace: key.namespace.to_string(),
            name: key.name.to_string(),
            uid,
            qos_class,
            labels: object.meta.labels.clone().unwrap_or_default(),
            cgroup,
            cgroup_id,
        };
        self.pods.insert(key, pod);
    }
}

/// The first of the pod's possible cgroup directories that exists, and its id.
fn find_cgroup(root: &Path, uid: &str, qos_class: &str) -> (Option<PathBuf>, Option<u64>) {
    if uid.is_empty() {
        return (None, None);
    }
    cgroup_candidates(root, uid, qos_class)
        .into_iter()
        .find_map(|path| {
            let metadata = std::fs::metadata(&path).ok().filter(|m| m.is_dir())?;
            Some((Some(path), Some(metadata.ino())))
        })
        .unwrap_or((None, None))
}

/// Where kubelet puts a pod's cgroup, for each driver: systemd
/// (`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid, _ for ->.slice`)
/// and cgroupfs (`kubepods/burstable/pod<uid>`); Guaranteed pods sit right under
/// `kubepods`. An unknown QoS class (not set yet) tries all three.
pub fn cgroup_candidates(root: &Path, uid: &str, qos_class: &str) -> Vec<PathBuf> {
    let classes: &[&str] = match qos_class {
        "Guaranteed" => &[""],
        "Burstable" => &["burstable"],
        "BestEffort" => &["besteffort"],
        _ => &["", "burstable", "besteffort"],
    };
    let systemd_uid = uid.replace('-', "_");
    let mut paths = Vec::new();
    for class in classes {
        let systemd = if class.is_empty() {
            root.join("kubepods.slice")
                .join(format!("kubepods-pod{systemd_uid}.slice"))
        } else {
            root.join("kubepods.slice")
                .join(format!("kubepods-{class}.slice"))
                .join(format!("kubepods-{class}-pod{systemd_uid}.slice"))
        };
        let cgroupfs = if class.is_empty() {
            root.join("kubepods").join(format!("pod{uid}"))
        } else {
            root.join("kubepods").join(class).join(format!("pod{uid}"))
        };
        paths.push(systemd);
        paths.push(cgroupfs);
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, uid: &str, qos: &str) -> Object {
        let body = serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "uid": uid, "labels": {"app": name}},
            "spec": {"nodeName": "node-1"},
            "status": {"qosClass": qos}
        });
        Object {
            meta: serde_json::from_value(body["metadata"].clone()).expect("metadata"),
            body,
        }
    }

    #[test]
    fn kubelets_cgroup_layout_for_both_drivers_and_every_qos_class() {
        let root = Path::new("/sys/fs/cgroup");
        let uid = "1b2c3d4e-0000-1111-2222-333344445555";
        let show = |qos| -> Vec<String> {
            cgroup_candidates(root, uid, qos)
                .iter()
                .map(|p| p.display().to_string())
                .collect()
        };
        assert_eq!(
            show("Burstable"),
            [
                "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_0000_1111_2222_333344445555.slice",
                "/sys/fs/cgroup/kubepods/burstable/pod1b2c3d4e-0000-1111-2222-333344445555",
            ]
        );
        assert_eq!(
            show("Guaranteed"),
            [
                "/sys/fs/cgroup/kubepods.slice/kubepods-pod1b2c3d4e_0000_1111_2222_333344445555.slice",
                "/sys/fs/cgroup/kubepods/pod1b2c3d4e-0000-1111-2222-333344445555",
            ]
        );
        assert_eq!(show("").len(), 6, "an unknown class tries all three");
    }

    #[test]
    fn a_pods_cgroup_is_found_once_kubelet_makes_it_and_a_relist_replaces_the_pods() {
        let root = tempfile::tempdir().expect("root");
        let mut pods = NodePods::new(root.path());
        let uid = "aaaa-bbbb";
        pods.event(Event::Apply(pod("web", uid, "BestEffort")));
        assert_eq!(pods.pods()[0].cgroup, None, "no cgroup yet");
        let dir = root.path().join("kubepods/besteffort/podaaaa-bbbb");
        std::fs::create_dir_all(&dir).expect("cgroup dir");
        pods.resolve();
        let found = &pods.pods()[0];
        assert_eq!(found.cgroup.as_deref(), Some(dir.as_path()));
        assert_eq!(
            found.cgroup_id,
            Some(std::fs::metadata(&dir).expect("dir").ino())
        );
        assert_eq!(found.labels["app"], "web");

        pods.event(Event::Init);
        pods.event(Event::InitApply(pod("db", "cccc", "Guaranteed")));
        assert_eq!(
            pods.pods().len(),
            1,
            "the old view until the list is complete"
        );
        pods.event(Event::InitDone);
        let names: Vec<String> = pods.pods().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["db"]);
    }
}
