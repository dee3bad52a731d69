//! The agent: what it holds between changes (`agent`: the source, the store of resources
//! in force, the incremental compiler and the sink it feeds), where the plan goes on a node
//! (`node`: the kernel maps and the proxy's route tables; `ejected`: endpoints the proxy's
//! outlier detection took out, left out of the kernel's tables too), the L7 proxy it runs (`proxy`),
//! the loop that drives it (`run`: start-up, file events, SIGHUP, signals to stop), its
//! admin listener (`admin`: metrics, health, pages), its own metrics (`metrics`), freed
//! memory handed back after a pass (`memory`) and what it tells the operator (`report`).

mod admin;
mod agent;
mod ejected;
pub(crate) mod memory;
mod metrics;
mod node;
mod proxy;
mod report;
mod run;

pub use agent::{Agent, Applied, PassError, Read, Sink, read};
pub use ejected::{EJECTIONS_PAGE, EjectionRecord};
pub use proxy::ProxySettings;
pub use run::{NODE_PODS_PAGE, RunOptions, run};
