//! vsteer: Istio traffic steering from one agent per node.
//!
//! Data flows one way: `sources` read resources into the `config` model, the `compiler` turns
//! them into a `compiler::Plan`, and the `datapath` writes that plan into the kernel's maps.

pub mod cli;
pub mod compiler;
pub mod config;
pub mod datapath;
pub mod sources;
