//! Turning one Kubernetes-style object (apiVersion, kind, metadata, spec) into a
//! [`Resource`].
//!
//! The step every source shares: the file source hands it a YAML document, a Kubernetes
//! source an object converted to a [`Value`]. It decides what is read, skipped with a
//! warning, or rejected with an error naming the resource and field.

use serde::de::DeserializeOwned;

use crate::diagnostic::{Diagnostic, Subject};
use crate::identity::{
    DEFAULT_NAMESPACE, ISTIO_NETWORKING_GROUP, Kind, Precedence, ResourceId, SUPPORTED_VERSIONS,
};
use crate::resource::{Origin, Resource, ResourceSpec};
use crate::yaml::{Mapping, Value};

/// Why an object could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "expected a Kubernetes object (a mapping with apiVersion, kind, metadata and spec), found {found}"
    )]
    NotAnObject { found: &'static str },
    #[error("kind is missing")]
    KindMissing,
    #[error("kind must be a string, found {found}")]
    KindNotString { found: &'static str },
    #[error("apiVersion must be a string, found {found}")]
    ApiVersionNotString { found: &'static str },
    #[error("apiVersion is missing; expected {ISTIO_NETWORKING_GROUP}/v1")]
    ApiVersionMissing,
    #[error(
        "unsupported version {api_version:?}; vsteer reads {}",
        supported_versions()
    )]
    UnsupportedVersion { api_version: String },
    #[error("metadata must be a mapping, found {found}")]
    MetadataNotMapping { found: &'static str },
    #[error("metadata.name is missing")]
    NameMissing,
    #[error("metadata.name must not be empty")]
    NameEmpty,
    #[error("metadata.name must be a string, found {found}")]
    NameNotString { found: &'static str },
    #[error("metadata.namespace must be a string, found {found}")]
    NamespaceNotString { found: &'static str },
    #[error("spec must be a mapping, found {found}")]
    SpecNotMapping { found: &'static str },
    /// The spec does not fit the kind's schema; serde's message.
    #[error("{0}")]
    Spec(String),
}

/// What was read but skipped or ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeWarning {
    #[error("unsupported kind {kind}, skipped")]
    UnsupportedKind { kind: String },
    #[error("unsupported kind {kind} ({api_version}), skipped")]
    UnsupportedKindVersion { kind: String, api_version: String },
    #[error("unknown field, ignored")]
    UnknownField,
    #[error("unknown key {0}, ignored")]
    UnknownKey(String),
}

fn supported_versions() -> String {
    SUPPORTED_VERSIONS
        .map(|v| format!("{ISTIO_NETWORKING_GROUP}/{v}"))
        .join(", ")
}

/// Top-level keys of an object that are not worth a warning: `status` appears in every
/// `kubectl get -o yaml` output.
const KNOWN_TOP_LEVEL: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

/// Decodes `object`, read from `origin`, at `precedence`.
///
/// `prefix` is the field path of the object inside its document ("" for a document that is
/// the object itself, `items[3]` for an item of a `kind: List`); every field named in a
/// message starts with it. Returns `Ok(None)` for objects vsteer does not read (a warning
/// says so), and pushes warnings about ignored fields to `warnings`. An error names the
/// resource when its kind and name could be read.
pub fn decode_object(
    origin: &Origin,
    precedence: Precedence,
    prefix: &str,
    object: Value,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Option<Resource>, Diagnostic> {
    let file = origin.file.clone();
    let at = |subject: &Subject, field: &str, problem: DecodeError| {
        Diagnostic::new(file.clone(), problem)
            .about(subject.clone())
            .field(join(prefix, field))
    };
    let warn = |subject: &Subject, field: &str, problem: DecodeWarning| {
        Diagnostic::new(file.clone(), problem)
            .about(subject.clone())
            .field(join(prefix, field))
    };
    // Until the kind and name are known, the document number is the best locator.
    let mut subject = Subject::Document {
        kind: None,
        document: origin.document,
    };

    let Value::Mapping(mut map) = object else {
        let found = describe(&object);
        return Err(at(&subject, "", DecodeError::NotAnObject { found }));
    };

    let kind = match map.get("kind") {
        None | Some(Value::Null) => return Err(at(&subject, "kind", DecodeError::KindMissing)),
        Some(Value::String(kind)) => kind.clone(),
        Some(other) => {
            let found = describe(other);
            return Err(at(&subject, "kind", DecodeError::KindNotString { found }));
        }
    };
    // The resource is named as soon as possible so that later errors can say which one.
    subject = label(&kind, &map, origin);

    let api_version = match map.get("apiVersion") {
        None | Some(Value::Null) => None,
        Some(Value::String(v)) => Some(v.clone()),
        Some(other) => {
            let found = describe(other);
            return Err(at(
                &subject,
                "apiVersion",
                DecodeError::ApiVersionNotString { found },
            ));
        }
    };
    let known_kind = Kind::parse(&kind);
    let Some(api_version) = api_version else {
        if known_kind.is_some() {
            return Err(at(&subject, "apiVersion", DecodeError::ApiVersionMissing));
        }
        warnings.push(warn(&subject, "", DecodeWarning::UnsupportedKind { kind }));
        return Ok(None);
    };
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let kind = match known_kind {
        Some(kind) if group == ISTIO_NETWORKING_GROUP => kind,
        _ => {
            warnings.push(warn(
                &subject,
                "",
                DecodeWarning::UnsupportedKindVersion {
                    kind,
                    api_version: api_version.clone(),
                },
            ));
            return Ok(None);
        }
    };
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(at(
            &subject,
            "apiVersion",
            DecodeError::UnsupportedVersion { api_version },
        ));
    }

    let (name, namespace) =
        read_metadata(map.get("metadata")).map_err(|(f, e)| at(&subject, f, e))?;

    for key in map.keys() {
        match key.as_str() {
            Some(key) if KNOWN_TOP_LEVEL.contains(&key) => {}
            Some(key) => warnings.push(warn(&subject, key, DecodeWarning::UnknownField)),
            None => warnings.push(warn(
                &subject,
                "",
                DecodeWarning::UnknownKey(format!("{key:?}")),
            )),
        }
    }

    let mut spec = match map.remove("spec") {
        None | Some(Value::Null) => Value::Mapping(Mapping::new()),
        Some(spec @ Value::Mapping(_)) => spec,
        Some(other) => {
            let found = describe(&other);
            return Err(at(&subject, "spec", DecodeError::SpecNotMapping { found }));
        }
    };
    // Kubernetes drops null fields before validation; doing the same lets `endpoints:`
    // with nothing after it mean "no endpoints" instead of a type error.
    strip_nulls(&mut spec);

    let mut ignored = Vec::new();
    let spec = match kind {
        // Parsed only from Istio's group (above): a Service's entry is made by the registry.
        Kind::ServiceEntry | Kind::Service => {
            typed(spec, &mut ignored).map(ResourceSpec::ServiceEntry)
        }
        Kind::VirtualService => typed(spec, &mut ignored).map(ResourceSpec::VirtualService),
        Kind::DestinationRule => typed(spec, &mut ignored).map(ResourceSpec::DestinationRule),
    };
    for path in ignored {
        warnings.push(warn(&subject, &path, DecodeWarning::UnknownField));
    }
    let spec = spec.map_err(|(path, message)| at(&subject, &path, DecodeError::Spec(message)))?;

    Ok(Some(Resource {
        id: ResourceId::new(kind, &namespace, &name),
        origin: origin.clone(),
        precedence,
        api_version: crate::intern::shared(&api_version),
        spec,
    }))
}

/// Deserializes a spec, collecting the paths of ignored (unknown) fields; on error returns
/// the failing field's path and serde's message.
fn typed<T: DeserializeOwned>(
    spec: Value,
    ignored: &mut Vec<String>,
) -> Result<T, (String, String)> {
    let mut on_ignored = |path: serde_ignored::Path| ignored.push(ignored_path(&path));
    let result =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(spec, &mut on_ignored));
    result.map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "spec".to_string()
        } else {
            format!("spec.{path}")
        };
        (field, e.into_inner().to_string())
    })
}

/// `spec.ports[0].foo` for serde_ignored's path (whose own Display writes `ports.0.foo`).
fn ignored_path(path: &serde_ignored::Path) -> String {
    fn walk(path: &serde_ignored::Path, out: &mut String) {
        match path {
            serde_ignored::Path::Root => out.push_str("spec"),
            serde_ignored::Path::Seq { parent, index } => {
                walk(parent, out);
                out.push_str(&format!("[{index}]"));
            }
            serde_ignored::Path::Map { parent, key } => {
                walk(parent, out);
                out.push('.');
                out.push_str(key);
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    let mut out = String::new();
    walk(path, &mut out);
    out
}

/// Reads `metadata.name` and `metadata.namespace`; errors are (field, error).
fn read_metadata(
    metadata: Option<&Value>,
) -> Result<(String, String), (&'static str, DecodeError)> {
    let metadata = match metadata {
        None | Some(Value::Null) => return Err(("metadata.name", DecodeError::NameMissing)),
        Some(Value::Mapping(m)) => m,
        Some(other) => {
            let found = describe(other);
            return Err(("metadata", DecodeError::MetadataNotMapping { found }));
        }
    };
    let name = match metadata.get("name") {
        None | Some(Value::Null) => return Err(("metadata.name", DecodeError::NameMissing)),
        Some(Value::String(name)) if name.is_empty() => {
            return Err(("metadata.name", DecodeError::NameEmpty));
        }
        Some(Value::String(name)) => name.clone(),
        Some(other) => {
            let found = describe(other);
            return Err(("metadata.name", DecodeError::NameNotString { found }));
        }
    };
    let namespace = match metadata.get("namespace") {
        None | Some(Value::Null) => DEFAULT_NAMESPACE.to_string(),
        Some(Value::String(ns)) if ns.is_empty() => DEFAULT_NAMESPACE.to_string(),
        Some(Value::String(ns)) => ns.clone(),
        Some(other) => {
            let found = describe(other);
            return Err((
                "metadata.namespace",
                DecodeError::NamespaceNotString { found },
            ));
        }
    };
    Ok((name, namespace))
}

/// The resource (`Kind namespace/name`) when the metadata can be read, else the kind and
/// document number.
fn label(kind: &str, map: &Mapping, origin: &Origin) -> Subject {
    let metadata = map.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty());
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE);
    match (Kind::parse(kind), name) {
        (Some(kind), Some(name)) => Subject::Resource(ResourceId::new(kind, namespace, name)),
        // Another kind's name only serves messages.
        (None, Some(name)) => Subject::Other(format!("{kind} {namespace}/{name}")),
        (_, None) => Subject::Document {
            kind: Some(kind.to_string()),
            document: origin.document,
        },
    }
}

fn strip_nulls(value: &mut Value) {
    match value {
        Value::Mapping(map) => {
            map.retain(|_, v| !v.is_null());
            for (_, v) in map.iter_mut() {
                strip_nulls(v);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(strip_nulls),
        Value::Tagged(tagged) => strip_nulls(&mut tagged.value),
        _ => {}
    }
}

fn join(prefix: &str, field: &str) -> String {
    match (prefix.is_empty(), field.is_empty()) {
        (true, _) => field.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{field}"),
    }
}

/// A short description of a YAML value's type for messages.
pub fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> (Result<Option<Resource>, Diagnostic>, Vec<Diagnostic>) {
        let origin = Origin {
            file: "t.yaml".into(),
            document: 0,
        };
        let value: Value = crate::yaml::from_str(text).unwrap();
        let mut warnings = Vec::new();
        let result = decode_object(&origin, precedence(), "", value, &mut warnings);
        (result, warnings)
    }

    fn precedence() -> Precedence {
        Precedence::position(&std::sync::Arc::from("t.yaml"), 0, 0)
    }

    #[test]
    fn namespace_defaults_and_kind_is_canonical() {
        let (result, warnings) = decode(
            "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: r}\n",
        );
        let resource = result.unwrap().unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(resource.namespace(), "default");
        assert_eq!(resource.id.to_string(), "DestinationRule default/r");
        assert_eq!(&*resource.api_version, "networking.istio.io/v1beta1");
    }

    #[test]
    fn unknown_spec_fields_are_warnings_with_their_path() {
        let (result, warnings) = decode(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s, namespace: ns}\nspec:\n  hosts: [a]\n  ports: [{number: 80, name: http, protocl: TCP}]\n  colour: blue\n",
        );
        assert!(result.unwrap().is_some());
        let fields: Vec<_> = warnings.iter().map(|w| w.field.clone().unwrap()).collect();
        assert_eq!(fields, ["spec.ports[0].protocl", "spec.colour"]);
        assert!(
            warnings
                .iter()
                .all(|w| w.resource().as_deref() == Some("ServiceEntry ns/s"))
        );
    }

    #[test]
    fn null_fields_read_as_absent() {
        let (result, _) = decode(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\nspec:\n  hosts: [a]\n  endpoints:\n",
        );
        let Some(Resource {
            spec: ResourceSpec::ServiceEntry(se),
            ..
        }) = result.unwrap()
        else {
            panic!("not a ServiceEntry");
        };
        assert!(se.endpoints.is_empty());
    }

    #[test]
    fn missing_kind_and_non_mapping_are_errors() {
        let (result, _) = decode("apiVersion: v1\nmetadata: {name: x}\n");
        assert_eq!(result.unwrap_err().field.as_deref(), Some("kind"));
        let (result, _) = decode("- a\n- b\n");
        assert!(result.unwrap_err().message().contains("found a list"));
    }

    #[test]
    fn missing_api_version_of_an_istio_kind_is_an_error() {
        let (result, _) = decode("kind: VirtualService\nmetadata: {name: x}\n");
        let e = result.unwrap_err();
        assert_eq!(e.field.as_deref(), Some("apiVersion"));
        assert_eq!(e.resource().as_deref(), Some("VirtualService default/x"));
    }

    #[test]
    fn field_prefix_is_applied() {
        let origin = Origin {
            file: "t.yaml".into(),
            document: 2,
        };
        let value: Value = crate::yaml::from_str(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {}\n",
        )
        .unwrap();
        let e =
            decode_object(&origin, precedence(), "items[4]", value, &mut Vec::new()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("items[4].metadata.name"));
        assert_eq!(e.resource().as_deref(), Some("ServiceEntry in document 3"));
    }
}
