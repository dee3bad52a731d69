//! The plan: what the datapath and the proxy must do, independent of how it was configured.
//! Every steered service (`service`: VIP, port, protocol, backends, load balancer), the rule
//! that routes it (`route`), whether the kernel or the proxy serves it and, for HTTP
//! services, the full route table the proxy applies per request (`http`; header operation
//! values in Envoy's format, `header_format`). The compiler writes it; `vsteer plan` prints
//! it (`render`).

pub mod header_format;
pub mod http;
pub mod render;
pub mod route;
pub mod service;

pub use render::render;
pub use route::{RouteRef, RuleRef, Section};
pub use service::{
    BackendPlan, Decision, LoadBalancer, PASSTHROUGH_ADDRESS, Plan, Protocol, REFUSED_PORT,
    ServiceKey, ServicePlan, WEIGHT_SCALE, is_passthrough,
};
