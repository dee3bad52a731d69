//! Turning one Kubernetes-style object (apiVersion, kind, metadata, spec) into a [`Resource`].
//!
//! This is the step every source shares: the file source hands it a YAML document, a
//! Kubernetes source can hand it an object converted to a [`Value`]. It decides what is read,
//! skipped with a warning, or rejected with an error naming the resource and field.

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

use super::error::ConfigError;
use super::model::{
    DEFAULT_NAMESPACE, ISTIO_NETWORKING_GROUP, Kind, Meta, Origin, Resource, ResourceSpec,
    SUPPORTED_VERSIONS,
};

/// Top-level keys of an object that are not worth a warning: `status` appears in every
/// `kubectl get -o yaml` output.
const KNOWN_TOP_LEVEL: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

/// Decodes `object`, read from `origin`.
///
/// `prefix` is the field path of the object inside its document ("" for a document that is
/// the object itself, `items[3]` for an item of a `kind: List`); every field named in a
/// message starts with it. Returns `Ok(None)` for objects vsteer does not read (a warning
/// says so), and pushes warnings about ignored fields to `warnings`.
pub fn decode_object(
    origin: &Origin,
    prefix: &str,
    object: Value,
    warnings: &mut Vec<ConfigError>,
) -> Result<Option<Resource>, ConfigError> {
    let file = origin.file.as_str();
    // Until the kind and name are known, the document number is the best locator.
    let document = format!("document {}", origin.document + 1);
    let error = |field: &str, message: String| {
        let e = ConfigError::new(file, message).resource(document.clone());
        match join(prefix, field) {
            f if f.is_empty() => e,
            f => e.field(f),
        }
    };

    let Value::Mapping(mut map) = object else {
        return Err(error(
            "",
            format!(
                "expected a Kubernetes object (a mapping with apiVersion, kind, metadata and spec), found {}",
                describe(&object)
            ),
        ));
    };

    let kind = match map.get("kind") {
        None | Some(Value::Null) => return Err(error("kind", "kind is missing".into())),
        Some(Value::String(kind)) => kind.clone(),
        Some(other) => {
            return Err(error(
                "kind",
                format!("kind must be a string, found {}", describe(other)),
            ));
        }
    };
    // The resource is named as soon as possible so that later errors can say which one.
    let label = resource_label(&kind, &map, origin);
    let error = |field: &str, message: String| error(field, message).resource(label.clone());

    let api_version = match map.get("apiVersion") {
        None | Some(Value::Null) => None,
        Some(Value::String(v)) => Some(v.clone()),
        Some(other) => {
            return Err(error(
                "apiVersion",
                format!("apiVersion must be a string, found {}", describe(other)),
            ));
        }
    };
    let known_kind = Kind::parse(&kind);
    let Some(api_version) = api_version else {
        if known_kind.is_some() {
            return Err(error(
                "apiVersion",
                format!("apiVersion is missing; expected {ISTIO_NETWORKING_GROUP}/v1"),
            ));
        }
        warnings.push(error("", format!("unsupported kind {kind}, skipped")));
        return Ok(None);
    };
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let kind = match known_kind {
        Some(kind) if group == ISTIO_NETWORKING_GROUP => kind,
        _ => {
            warnings.push(error(
                "",
                format!("unsupported kind {kind} ({api_version}), skipped"),
            ));
            return Ok(None);
        }
    };
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(error(
            "apiVersion",
            format!(
                "unsupported version {api_version:?}; vsteer reads {}",
                SUPPORTED_VERSIONS
                    .map(|v| format!("{ISTIO_NETWORKING_GROUP}/{v}"))
                    .join(", ")
            ),
        ));
    }

    let (name, namespace) = read_metadata(map.get("metadata")).map_err(|(f, m)| error(f, m))?;

    for key in map.keys() {
        match key.as_str() {
            Some(key) if KNOWN_TOP_LEVEL.contains(&key) => {}
            Some(key) => warnings.push(error(key, "unknown field, ignored".into())),
            None => warnings.push(error("", format!("unknown key {key:?}, ignored"))),
        }
    }

    let mut spec = match map.remove("spec") {
        None | Some(Value::Null) => Value::Mapping(Mapping::new()),
        Some(spec @ Value::Mapping(_)) => spec,
        Some(other) => {
            return Err(error(
                "spec",
                format!("spec must be a mapping, found {}", describe(&other)),
            ));
        }
    };
    // Kubernetes drops null fields before validation; doing the same lets `endpoints:`
    // with nothing after it mean "no endpoints" instead of a type error.
    strip_nulls(&mut spec);

    let mut ignored = Vec::new();
    let spec = match kind {
        Kind::ServiceEntry => typed(spec, &mut ignored).map(ResourceSpec::ServiceEntry),
        Kind::VirtualService => typed(spec, &mut ignored).map(ResourceSpec::VirtualService),
        Kind::DestinationRule => typed(spec, &mut ignored).map(ResourceSpec::DestinationRule),
    };
    for path in ignored {
        warnings.push(error(&path, "unknown field, ignored".into()));
    }
    let spec = spec.map_err(|(path, message)| error(&path, message))?;

    Ok(Some(Resource {
        origin: origin.clone(),
        meta: Meta {
            api_version,
            kind: kind.as_str().to_string(),
            name,
            namespace,
        },
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

/// Reads `metadata.name` and `metadata.namespace`; errors are (field, message).
fn read_metadata(metadata: Option<&Value>) -> Result<(String, String), (&'static str, String)> {
    let metadata = match metadata {
        None | Some(Value::Null) => {
            return Err(("metadata.name", "metadata.name is missing".into()));
        }
        Some(Value::Mapping(m)) => m,
        Some(other) => {
            return Err((
                "metadata",
                format!("metadata must be a mapping, found {}", describe(other)),
            ));
        }
    };
    let name = match metadata.get("name") {
        None | Some(Value::Null) => {
            return Err(("metadata.name", "metadata.name is missing".into()));
        }
        Some(Value::String(name)) if name.is_empty() => {
            return Err(("metadata.name", "metadata.name must not be empty".into()));
        }
        Some(Value::String(name)) => name.clone(),
        Some(other) => {
            return Err((
                "metadata.name",
                format!("metadata.name must be a string, found {}", describe(other)),
            ));
        }
    };
    let namespace = match metadata.get("namespace") {
        None | Some(Value::Null) => DEFAULT_NAMESPACE.to_string(),
        Some(Value::String(ns)) if ns.is_empty() => DEFAULT_NAMESPACE.to_string(),
        Some(Value::String(ns)) => ns.clone(),
        Some(other) => {
            return Err((
                "metadata.namespace",
                format!(
                    "metadata.namespace must be a string, found {}",
                    describe(other)
                ),
            ));
        }
    };
    Ok((name, namespace))
}

/// `Kind namespace/name` when the metadata can be read, else the kind and document number.
fn resource_label(kind: &str, map: &Mapping, origin: &Origin) -> String {
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
    match name {
        Some(name) => format!("{kind} {namespace}/{name}"),
        // 1-based, as a person counts the documents of a file.
        None => format!("{kind} in document {}", origin.document + 1),
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
pub(crate) fn describe(value: &Value) -> &'static str {
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

    fn decode(text: &str) -> (Result<Option<Resource>, ConfigError>, Vec<ConfigError>) {
        let origin = Origin {
            file: "t.yaml".into(),
            document: 0,
        };
        let value: Value = serde_yaml::from_str(text).unwrap();
        let mut warnings = Vec::new();
        let result = decode_object(&origin, "", value, &mut warnings);
        (result, warnings)
    }

    #[test]
    fn namespace_defaults_and_kind_is_canonical() {
        let (result, warnings) = decode(
            "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: r}\n",
        );
        let resource = result.unwrap().unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(resource.meta.namespace, "default");
        assert_eq!(resource.id(), "DestinationRule default/r");
        assert_eq!(resource.meta.api_version, "networking.istio.io/v1beta1");
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
                .all(|w| w.resource.as_deref() == Some("ServiceEntry ns/s"))
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
        assert!(result.unwrap_err().message.contains("found a list"));
    }

    #[test]
    fn missing_api_version_of_an_istio_kind_is_an_error() {
        let (result, _) = decode("kind: VirtualService\nmetadata: {name: x}\n");
        let e = result.unwrap_err();
        assert_eq!(e.field.as_deref(), Some("apiVersion"));
        assert_eq!(e.resource.as_deref(), Some("VirtualService default/x"));
    }

    #[test]
    fn field_prefix_is_applied() {
        let origin = Origin {
            file: "t.yaml".into(),
            document: 2,
        };
        let value: Value = serde_yaml::from_str(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {}\n",
        )
        .unwrap();
        let e = decode_object(&origin, "items[4]", value, &mut Vec::new()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("items[4].metadata.name"));
        assert_eq!(e.resource.as_deref(), Some("ServiceEntry in document 3"));
    }
}
