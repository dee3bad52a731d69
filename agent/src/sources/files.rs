//! Reading resources from multi-document YAML files, as `kubectl apply -f` takes them.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use serde_yaml::Value;

use super::Loaded;
use crate::config::{ConfigError, Origin, decode_object};

/// Reads every `*.yaml` and `*.yml` file of `dir` (not its subdirectories), in name order so
/// that "first wins" rules give the same answer on every run.
///
/// Problems in the files are reported in the returned [`Loaded`]; `Err` is for I/O failures
/// (the directory or a file cannot be read).
pub fn load_dir(dir: &Path) -> anyhow::Result<Loaded> {
    let files = yaml_files(dir)?;
    let mut loaded = Loaded::default();
    if files.is_empty() {
        loaded.warnings.push(no_yaml_warning(dir));
    }
    for file in files {
        loaded.extend(load_file(&file)?);
    }
    Ok(loaded)
}

/// The `*.yaml` and `*.yml` files of `dir` (not its subdirectories), sorted by name.
pub fn yaml_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        fs::read_dir(dir).with_context(|| format!("reading config directory {}", dir.display()))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing config directory {}", dir.display()))?;
        let path = entry.path();
        if !is_yaml_name(&entry.file_name()) {
            continue;
        }
        // fs::metadata follows symlinks: a ConfigMap volume mounts each file as a symlink.
        let metadata =
            fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if metadata.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

pub(super) fn no_yaml_warning(dir: &Path) -> ConfigError {
    ConfigError::new(
        dir.display().to_string(),
        "no *.yaml or *.yml files in this directory",
    )
}

/// Reads one multi-document YAML file.
pub fn load_file(path: &Path) -> anyhow::Result<Loaded> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse_bytes(path, bytes))
}

/// Parses a file's bytes; `path` names it in resources and messages.
pub fn parse_bytes(path: &Path, bytes: Vec<u8>) -> Loaded {
    let name = path.display().to_string();
    match String::from_utf8(bytes) {
        Ok(text) => parse_str(&name, &text),
        Err(e) => Loaded {
            errors: vec![ConfigError::new(
                name,
                format!(
                    "not valid UTF-8 (at byte {}); file skipped",
                    e.utf8_error().valid_up_to()
                ),
            )],
            ..Loaded::default()
        },
    }
}

/// Parses a multi-document YAML stream; `origin_file` names it in resources and messages.
///
/// A YAML syntax error rejects the whole file: the documents after it cannot be found
/// reliably, and steering only part of a file's services would be more surprising than
/// steering none of them.
pub fn parse_str(origin_file: &str, text: &str) -> Loaded {
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(document) {
            Ok(value) => documents.push((index, value)),
            // The iterator repeats a syntax error forever, so stop at the first.
            Err(e) => {
                return Loaded {
                    errors: vec![syntax_error(origin_file, &e)],
                    ..Loaded::default()
                };
            }
        }
    }

    let mut loaded = Loaded::default();
    for (index, mut value) in documents {
        // Empty documents (a stray `---`, a file of comments) are not mistakes.
        if value.is_null() {
            continue;
        }
        let origin = Origin {
            file: origin_file.to_string(),
            document: index,
        };
        if let Err(e) = value.apply_merge() {
            loaded.errors.push(
                ConfigError::new(origin_file, format!("YAML merge key (<<): {e}"))
                    .resource(format!("document {}", index + 1)),
            );
            continue;
        }
        match list_items(value) {
            Ok(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    decode_into(&mut loaded, &origin, &format!("items[{i}]"), item);
                }
            }
            Err(object) => decode_into(&mut loaded, &origin, "", object),
        }
    }
    loaded
}

fn decode_into(loaded: &mut Loaded, origin: &Origin, prefix: &str, object: Value) {
    match decode_object(origin, prefix, object, &mut loaded.warnings) {
        Ok(Some(resource)) => loaded.resources.push(resource),
        Ok(None) => {}
        Err(e) => loaded.errors.push(e),
    }
}

/// The items of a `kind: List` (what `kubectl get -o yaml` prints for several objects), or
/// the value back when it is a single object.
fn list_items(value: Value) -> Result<Vec<Value>, Value> {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.ends_with("List"));
    let Value::Mapping(mut map) = value else {
        return Err(value);
    };
    match map.remove("items") {
        Some(Value::Sequence(items)) if is_list => Ok(items),
        Some(other) => {
            map.insert(Value::from("items"), other);
            Err(Value::Mapping(map))
        }
        None => Err(Value::Mapping(map)),
    }
}

fn syntax_error(file: &str, e: &serde_yaml::Error) -> ConfigError {
    let mut message = format!("invalid YAML: {e}");
    // Most libyaml messages already end with "at line L column C"; add it where not.
    if let Some(location) = e.location()
        && !message.contains(" line ")
    {
        message.push_str(&format!(
            " at line {} column {}",
            location.line(),
            location.column()
        ));
    }
    message.push_str("; file skipped");
    ConfigError::new(file, message)
}

fn is_yaml_name(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    // Dot files include the `..data` links of ConfigMap volumes and editors' backups.
    if name.starts_with('.') {
        return false;
    }
    Path::new(name.as_ref())
        .extension()
        .and_then(OsStr::to_str)
        .is_some_and(|ext| ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ResourceSpec;

    const SE: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: db
  namespace: data
spec:
  hosts: [db.data.svc.cluster.local]
  addresses: [10.9.0.1]
  ports:
  - {number: 5432, name: tcp-pg, protocol: TCP}
  resolution: STATIC
  endpoints:
  - address: 10.9.1.1
";

    #[test]
    fn documents_are_numbered_and_empty_ones_skipped() {
        let text = format!("---\n# nothing here\n---\n{SE}---\n---\n{SE}");
        let loaded = parse_str("a.yaml", &text);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let docs: Vec<_> = loaded.resources.iter().map(|r| r.origin.document).collect();
        assert_eq!(docs, [1, 3]);
        assert!(
            loaded
                .resources
                .iter()
                .all(|r| r.origin.file == "a.yaml" && r.id() == "ServiceEntry data/db")
        );
    }

    #[test]
    fn malformed_yaml_names_file_and_line_and_skips_the_file() {
        let text = format!("{SE}---\nkind: ServiceEntry\nmetadata: {{name: [x\n");
        let loaded = parse_str("broken.yaml", &text);
        assert!(loaded.resources.is_empty(), "the whole file is skipped");
        assert_eq!(loaded.errors.len(), 1);
        let e = &loaded.errors[0];
        assert_eq!(e.file, "broken.yaml");
        assert!(e.message.contains("line 17"), "{e}");
        assert!(e.message.contains("file skipped"), "{e}");
    }

    #[test]
    fn duplicate_keys_are_syntax_errors_with_a_line() {
        let loaded = parse_str("dup.yaml", "kind: ServiceEntry\nkind: VirtualService\n");
        assert_eq!(loaded.errors.len(), 1);
        assert!(
            loaded.errors[0].message.contains("line "),
            "{}",
            loaded.errors[0]
        );
    }

    #[test]
    fn other_kinds_are_warnings() {
        let text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: g}}\n---\n{SE}"
        );
        let loaded = parse_str("mixed.yaml", &text);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.resources.len(), 1);
        assert_eq!(loaded.warnings.len(), 2);
        assert_eq!(
            loaded.warnings[0].resource.as_deref(),
            Some("ConfigMap default/c")
        );
        assert!(
            loaded.warnings[1]
                .message
                .contains("unsupported kind Gateway")
        );
    }

    #[test]
    fn kubectl_lists_are_expanded() {
        let indented: String = SE.lines().map(|l| format!("  {l}\n")).collect();
        let text = format!(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.istio.io/v1\n  kind: ServiceEntry\n  metadata: {{}}\n-\n{indented}"
        );
        let loaded = parse_str("list.yaml", &text);
        assert_eq!(loaded.resources.len(), 1);
        assert!(matches!(
            loaded.resources[0].spec,
            ResourceSpec::ServiceEntry(_)
        ));
        assert_eq!(loaded.errors.len(), 1);
        assert_eq!(
            loaded.errors[0].field.as_deref(),
            Some("items[0].metadata.name")
        );
    }

    #[test]
    fn merge_keys_are_applied() {
        let text = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec:
  host: r
  subsets:
  - &base {name: v1, labels: {version: v1}}
  - <<: *base
    name: v2
";
        let loaded = parse_str("m.yaml", text);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let ResourceSpec::DestinationRule(dr) = &loaded.resources[0].spec else {
            panic!("not a DestinationRule");
        };
        assert_eq!(dr.subsets[1].name, "v2");
        assert_eq!(dr.subsets[1].labels["version"], "v1");
    }

    /// A scratch directory removed on drop, so a failing test does not leave it behind.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let dir =
                std::env::temp_dir().join(format!("vsteer-{tag}-{}-{nanos}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn load_dir_reads_yaml_files_in_name_order() {
        let dir = TempDir::new("load-dir");
        let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: db, namespace: data}\nspec: {host: db}\n";
        fs::write(dir.0.join("b-rules.yml"), dr).unwrap();
        fs::write(dir.0.join("a-services.yaml"), SE).unwrap();
        fs::write(dir.0.join("notes.txt"), "not: [yaml").unwrap();
        fs::create_dir(dir.0.join("sub.yaml")).unwrap();

        let loaded = load_dir(&dir.0).unwrap();
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let ids: Vec<_> = loaded.resources.iter().map(|r| r.id()).collect();
        assert_eq!(ids, ["ServiceEntry data/db", "DestinationRule data/db"]);
        assert!(loaded.resources[0].origin.file.ends_with("a-services.yaml"));
        assert!(loaded.resources[1].origin.file.ends_with("b-rules.yml"));
    }

    #[test]
    fn load_dir_of_a_missing_directory_names_it() {
        let dir = TempDir::new("missing");
        let missing = dir.0.join("nope");
        let e = load_dir(&missing).unwrap_err();
        assert!(format!("{e:#}").contains("nope"), "{e:#}");
    }

    #[test]
    fn load_file_rejects_non_utf8() {
        let dir = TempDir::new("utf8");
        let path = dir.0.join("bin.yaml");
        fs::write(&path, b"kind: \xff\n").unwrap();
        let loaded = load_file(&path).unwrap();
        assert_eq!(loaded.errors.len(), 1);
        assert!(loaded.errors[0].message.contains("UTF-8"));
    }
}
