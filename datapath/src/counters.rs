//! The per-backend connection counters (`VSTEER_COUNTERS`) the kernel creates on a backend's
//! first connect: pruned of backends no service has any more, so the map (65,536 entries)
//! holds the backends in force rather than every backend ever seen.

use std::collections::HashSet;

use anyhow::{Context, Result};
use aya::maps::{MapData, PerCpuHashMap};
use vsteer_common::Address;
use vsteer_plan::Plan;

use crate::keys::address;

pub struct Counters {
    map: PerCpuHashMap<MapData, Address, u64>,
}

impl Counters {
    pub fn new(map: PerCpuHashMap<MapData, Address, u64>) -> Self {
        Counters { map }
    }

    /// Deletes the counters of backends `plan` no longer has; returns how many. A counter
    /// the kernel creates meanwhile for a backend in force is kept (it is in the plan).
    pub fn prune(&mut self, plan: &Plan) -> Result<usize> {
        let wanted: HashSet<Address> = plan
            .services()
            .flat_map(|service| &service.backends)
            .map(|backend| address(backend.address, backend.port))
            .collect();
        // Listed first, deleted after: deleting while walking the keys restarts the walk.
        let mut gone = Vec::new();
        for key in self.map.keys() {
            let key = key.context("listing the connection counters")?;
            if !wanted.contains(&key) {
                gone.push(key);
            }
        }
        let mut pruned = 0;
        for key in gone {
            match self.map.remove(&key) {
                Ok(()) => pruned += 1,
                // Already gone (a concurrent uninstall) is fine.
                Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(e).context("deleting a connection counter"),
            }
        }
        Ok(pruned)
    }
}
