//! The node's pods for `vsteer status` (Kubernetes mode): read from the running agent's
//! `/node/pods`, each with its QoS class, cgroup id and cgroup, and labels.

use std::net::SocketAddr;

use super::admin_client::{self, Answer};
use crate::app::NODE_PODS_PAGE;
use crate::sources::kubernetes::node_pods::NodePod;

/// The section `vsteer status` prints: empty when the agent keeps no node pods (file mode,
/// or no agent: the proxy counters' section says so).
pub fn section(admin: SocketAddr) -> String {
    let page = match admin_client::get(admin, NODE_PODS_PAGE) {
        Ok(Answer::Page(page)) => page,
        Ok(Answer::NotFound) | Err(_) => return String::new(),
    };
    match serde_json::from_str::<Vec<NodePod>>(&page) {
        Ok(pods) => render(admin, &pods),
        Err(e) => format!("\nnode pods: {admin}{NODE_PODS_PAGE} is not a list of pods ({e})\n"),
    }
}

fn render(admin: SocketAddr, pods: &[NodePod]) -> String {
    let mut out = format!("\nnode pods ({admin}{NODE_PODS_PAGE}): {}\n", pods.len());
    if pods.is_empty() {
        return out;
    }
    out.push_str("POD                                QOS         CGROUP-ID  CGROUP  LABELS\n");
    for pod in pods {
        let labels: Vec<String> = pod.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(
            "{:<34} {:<11} {:>9}  {}  {}\n",
            format!("{}/{}", pod.namespace, pod.name),
            if pod.qos_class.is_empty() {
                "-"
            } else {
                &pod.qos_class
            },
            pod.cgroup_id.map_or("-".to_string(), |id| id.to_string()),
            pod.cgroup
                .as_ref()
                .map_or("(not made yet)".to_string(), |p| p.display().to_string()),
            labels.join(","),
        ));
    }
    out
}
