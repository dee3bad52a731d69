//! The one module that knows the YAML library. serde_yaml is deprecated upstream; a drop-in
//! fork (e.g. serde_yaml_ng) replaces it by renaming the dependency in Cargo.toml, because
//! nothing outside this module names it.

pub use serde_yaml::{Error, Mapping, Value};

/// Hands each document of a multi-document YAML stream to `each` as a [`Value`] (one at a
/// time: a file of thousands of documents never holds them all as values); stops at the
/// first syntax error, after which the stream's documents cannot be found reliably.
pub fn for_each_document(text: &str, mut each: impl FnMut(usize, Value)) -> Result<(), Error> {
    use serde::Deserialize;
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        each(index, Value::deserialize(document)?);
    }
    Ok(())
}

/// Parses one YAML (or JSON, a subset of YAML) value.
pub fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_yaml::from_str(text)
}

/// Turns any serializable value (e.g. a Kubernetes object's JSON) into a YAML [`Value`].
pub fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, Error> {
    serde_yaml::to_value(value)
}

/// "at line L column C" of a YAML error, when it has a location.
pub fn location(e: &Error) -> Option<(usize, usize)> {
    e.location().map(|l| (l.line(), l.column()))
}
