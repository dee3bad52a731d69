//! VirtualServices: ordered routing rules for a host.
//!
//! Not compiled yet. Routing at layer 4 (by destination port, source labels, weights and
//! subsets) is the next step; until then a VirtualService changes nothing and the user is
//! told so, rather than left to assume its rules are in force.

use crate::config::{Resource, VirtualServiceSpec};

pub(super) fn compile(resource: &Resource, _spec: &VirtualServiceSpec, notes: &mut Vec<String>) {
    notes.push(format!(
        "{}: routing rules are not compiled yet; connections are spread over all endpoints of the host",
        resource.id()
    ));
}
