//! Pieces several kinds share: string matches, port selectors, workload selectors,
//! percentages.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Selects workloads (pods, WorkloadEntries) by labels, as a ServiceEntry's
/// `workloadSelector` does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A port of a destination service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSelector {
    #[serde(default)]
    pub number: u32,
}

/// Istio's `Percent`: a share of requests, 0.0 to 100.0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Percent {
    #[serde(default)]
    pub value: f64,
}

/// Istio's `StringMatch`: one of `exact`, `prefix` or `regex`.
///
/// Deserialized through a struct rather than as a serde enum so that the Kubernetes JSON form
/// (`{"exact": "jason"}`) and the YAML form read the same way.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "StringMatchFields")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    /// RE2 syntax, matched against the whole value.
    Regex(String),
    /// `{}`: for headers and query parameters Istio reads this as "present, any value".
    Any,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StringMatchFields {
    #[serde(default)]
    exact: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    regex: Option<String>,
}

impl TryFrom<StringMatchFields> for StringMatch {
    type Error = String;

    fn try_from(fields: StringMatchFields) -> Result<Self, Self::Error> {
        match (fields.exact, fields.prefix, fields.regex) {
            (None, None, None) => Ok(StringMatch::Any),
            (Some(exact), None, None) => Ok(StringMatch::Exact(exact)),
            (None, Some(prefix), None) => Ok(StringMatch::Prefix(prefix)),
            (None, None, Some(regex)) => Ok(StringMatch::Regex(regex)),
            _ => Err("a string match takes only one of exact, prefix and regex".to_string()),
        }
    }
}
