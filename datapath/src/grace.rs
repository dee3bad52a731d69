//! Waiting for an RCU grace period from userspace, so that backend slots a connect may
//! still be reading are written again only once no program can hold them.
//!
//! A connect hook looks a service up and reads its slots within one run, which the kernel
//! wraps in an RCU read-side section. Updating an element of a map of maps makes the kernel
//! call `synchronize_rcu()` before the syscall returns (`maybe_wait_bpf_programs`, for
//! exactly these map types), so when it returns every run that started before it is over.
//! A timer could be outlasted by a stalled vCPU; this cannot.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aya::Ebpf;
use aya::maps::{ArrayOfMaps, MapData};
use vsteer_common::map_names;

pub struct Grace {
    outer: ArrayOfMaps<MapData, MapData>,
    inner: MapData,
}

impl Grace {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let outer = ebpf
            .take_map(map_names::GRACE)
            .context("map VSTEER_GRACE is missing from the eBPF object")?;
        let outer = ArrayOfMaps::try_from(outer)
            .context("map VSTEER_GRACE has an unexpected type or layout")?;
        let inner = ebpf
            .take_map(map_names::GRACE_INNER)
            .context("map VSTEER_GRACE_IN is missing from the eBPF object")?;
        let inner = match inner {
            aya::maps::Map::Array(data) => data,
            _ => anyhow::bail!("map VSTEER_GRACE_IN has an unexpected type"),
        };
        Ok(Self { outer, inner })
    }

    /// Returns once every program run that started before the call has finished; how long
    /// that took.
    pub fn wait(&mut self) -> Result<Duration> {
        let start = Instant::now();
        self.outer
            .set(0, &self.inner, 0)
            .context("waiting for an RCU grace period (updating VSTEER_GRACE)")?;
        Ok(start.elapsed())
    }
}
