//! The agent: what it holds between changes (`agent`: the source, the store of resources
//! in force, the incremental compiler and the datapath it feeds), the loop that drives it
//! (`run`: start-up, file events, SIGHUP, signals to stop) and what it tells the operator
//! (`report`). The L7 proxy and the Kubernetes source plug in here.

mod agent;
mod report;
mod run;

pub use agent::{Agent, Applied, PassError, Sink};
pub use run::{RunOptions, run};
