//! vsteer, the agent: one per node. `sources` read Istio resources (a directory of YAML
//! files, or the examples built in) and hand them to the model's store; `app` owns the loop
//! (source events -> store -> compiler -> datapath -> report); `cli` parses arguments and
//! calls into `app`. What the resources mean is the compiler's business (`vsteer-compiler`),
//! writing the kernel maps the datapath's (`vsteer-datapath`).

pub mod app;
pub mod cli;
pub mod resolve;
pub mod sources;
