//! The Istio configuration vsteer reads: the typed model, how an object becomes a
//! [`Resource`], and the error type that locates every problem.

pub mod decode;
pub mod error;
pub mod model;

pub use decode::decode_object;
pub use error::ConfigError;
pub use model::*;
