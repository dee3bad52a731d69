//! DNS resolution for ServiceEntries with `resolution: DNS` / `DNS_ROUND_ROBIN`, a stage
//! between the store and the compiler: `answers` holds which entries need which names and
//! what DNS last said of each, and hands the compiler copies of the entries with those
//! answers; `dns` looks the names up (hickory-resolver, on a thread of its own) again as
//! their TTLs run out, and keeps the last good answer when a lookup fails; `saved` keeps the
//! answers on disk for a restart while DNS fails.

pub mod answers;
pub mod dns;
pub mod saved;

pub use answers::{Answers, Watch};
pub use dns::{DnsSettings, Resolver};
pub use saved::SavedAnswers;
