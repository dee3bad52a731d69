//! The one module that knows the YAML library. serde_yaml is deprecated upstream; a drop-in
//! fork (e.g. serde_yaml_ng) replaces it by renaming the dependency in Cargo.toml, because
//! nothing outside this module names it.

pub use serde_yaml::{Error, Mapping, Value};

/// The documents of a multi-document YAML stream, each as a [`Value`]; stops at the first
/// syntax error (after which the stream's documents cannot be found reliably).
pub fn documents(text: &str) -> Result<Vec<Value>, Error> {
    use serde::Deserialize;
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        documents.push(Value::deserialize(document)?);
    }
    Ok(documents)
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
