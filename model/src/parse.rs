//! Reading the resources of one file: multi-document YAML (or JSON), as `kubectl apply -f`
//! takes it, with `kind: List` documents expanded. Pure: the bytes come from the caller.

use std::sync::Arc;

use crate::decode::{decode_object, describe};
use crate::diagnostic::{Diagnostic, Subject};
use crate::identity::{Precedence, ResourceId};
use crate::resource::{Origin, Resource};
use crate::yaml::{self, Value};

/// Why a whole file, or one document of it, could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not valid UTF-8 (at byte {valid_up_to}); file skipped")]
    NotUtf8 { valid_up_to: usize },
    /// libyaml's message, with "at line L column C" where it did not say so itself.
    #[error("invalid YAML: {message}; file skipped")]
    Syntax { message: String },
    #[error("YAML merge key (<<): {message}")]
    MergeKey { message: String },
    /// A document that is a string, number or list: the file is not a manifest at all
    /// (garbage, a truncated or wrongly generated file), so none of it is believed.
    #[error(
        "document {document} is {found}, not a Kubernetes object (a mapping with apiVersion, \
         kind, metadata and spec): not a manifest; file skipped"
    )]
    NotAManifest {
        document: usize,
        found: &'static str,
    },
}

/// What one file held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// In file order.
    pub resources: Vec<Resource>,
    /// Problems that made vsteer skip a document or the whole file.
    pub errors: Vec<Diagnostic>,
    /// Things skipped or ignored on purpose (other kinds, unknown fields).
    pub warnings: Vec<Diagnostic>,
    /// Nothing of the file could be read (a YAML syntax error, not UTF-8): what it held last
    /// time is unknown, not gone.
    pub unreadable: bool,
    /// The documents (and list items) that failed to decode: what was there last time is
    /// unknown, not gone.
    pub failed: Vec<Failed>,
}

/// A document (or an item of a `kind: List` document) that did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub document: usize,
    pub item: usize,
    /// The resource it names, when its kind and name could be read.
    pub id: Option<ResourceId>,
}

/// Parses a file's bytes; `file` names it in resources and messages.
pub fn parse_bytes(file: &str, bytes: Vec<u8>) -> Parsed {
    match String::from_utf8(bytes) {
        Ok(text) => parse_str(file, &text),
        Err(e) => unreadable(Diagnostic::new(
            file,
            ParseError::NotUtf8 {
                valid_up_to: e.utf8_error().valid_up_to(),
            },
        )),
    }
}

/// Parses a multi-document YAML stream; `file` names it in resources and messages.
///
/// A YAML syntax error rejects the whole file: the documents after it cannot be found
/// reliably, and steering only part of a file's services would be more surprising than
/// steering none of them.
pub fn parse_str(file: &str, text: &str) -> Parsed {
    let file: Arc<str> = Arc::from(file);
    // A UTF-8 byte-order mark (editors on Windows write one) is not content: kubectl skips it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parsed = Parsed::default();
    let mut not_a_manifest = None;
    let result = yaml::for_each_document(text, |index, value| {
        if not_a_manifest.is_some() {
            return;
        }
        if matches!(
            value,
            Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Sequence(_)
        ) {
            // Garbage that happens to be valid YAML (any text without a colon is a string).
            not_a_manifest = Some(ParseError::NotAManifest {
                document: index + 1,
                found: describe(&value),
            });
            return;
        }
        document_into(&mut parsed, &file, index, value)
    });
    match (result, not_a_manifest) {
        // What was decoded before the error is dropped: the whole file is unreadable.
        (Err(e), _) => unreadable(syntax_error(&file, &e)),
        (Ok(()), Some(error)) => unreadable(Diagnostic::new(file.clone(), error)),
        (Ok(()), None) => parsed,
    }
}

/// Decodes one object read from the Kubernetes API, whose precedence is its creation order
/// (the caller reads it from the metadata); `file` names it in messages, e.g.
/// `kubernetes:VirtualService/shop/reviews`. A decoding error leaves `failed` set, so the
/// store keeps the object's last good version, as for a file.
pub fn parse_object(file: &str, precedence: Precedence, object: Value) -> Parsed {
    let origin = Origin {
        file: Arc::from(file),
        document: 0,
    };
    let mut parsed = Parsed::default();
    decode_at(&mut parsed, &origin, precedence, 0, "", object);
    parsed
}

fn document_into(parsed: &mut Parsed, file: &Arc<str>, index: usize, mut value: Value) {
    // Empty documents (a stray `---`, a file of comments) are not mistakes.
    if value.is_null() {
        return;
    }
    let origin = Origin {
        file: file.clone(),
        document: index,
    };
    if let Err(e) = value.apply_merge() {
        parsed.errors.push(
            Diagnostic::new(
                file.clone(),
                ParseError::MergeKey {
                    message: e.to_string(),
                },
            )
            .about(Subject::Document {
                kind: None,
                document: index,
            }),
        );
        parsed.failed.push(Failed {
            document: index,
            item: 0,
            id: None,
        });
        return;
    }
    match list_items(value) {
        Ok(items) => {
            for (i, item) in items.into_iter().enumerate() {
                decode_into(parsed, &origin, i, &format!("items[{i}]"), item);
            }
        }
        Err(object) => decode_into(parsed, &origin, 0, "", object),
    }
}

fn unreadable(error: Diagnostic) -> Parsed {
    Parsed {
        errors: vec![error],
        unreadable: true,
        ..Parsed::default()
    }
}

fn decode_into(parsed: &mut Parsed, origin: &Origin, item: usize, prefix: &str, object: Value) {
    let precedence = Precedence::position(&origin.file, origin.document, item);
    decode_at(parsed, origin, precedence, item, prefix, object)
}

fn decode_at(
    parsed: &mut Parsed,
    origin: &Origin,
    precedence: Precedence,
    item: usize,
    prefix: &str,
    object: Value,
) {
    match decode_object(origin, precedence, prefix, object, &mut parsed.warnings) {
        Ok(Some(resource)) => parsed.resources.push(resource),
        Ok(None) => {}
        Err(e) => {
            parsed.failed.push(Failed {
                document: origin.document,
                item,
                id: e.resource_id_of().cloned(),
            });
            parsed.errors.push(e);
        }
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

fn syntax_error(file: &Arc<str>, e: &yaml::Error) -> Diagnostic {
    let mut message = e.to_string();
    // Most libyaml messages already end with "at line L column C"; add it where not.
    if let Some((line, column)) = yaml::location(e)
        && !message.contains(" line ")
    {
        message.push_str(&format!(" at line {line} column {column}"));
    }
    Diagnostic::new(file.clone(), ParseError::Syntax { message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ResourceSpec;

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
                .all(|r| &*r.origin.file == "a.yaml" && r.id.to_string() == "ServiceEntry data/db")
        );
    }

    /// As kubectl reads them: a UTF-8 byte-order mark, with LF or CRLF line ends.
    #[test]
    fn a_byte_order_mark_and_crlf_line_ends_are_read() {
        let crlf = SE.replace('\n', "\r\n");
        for text in [
            format!("\u{feff}{SE}"),
            format!("\u{feff}{crlf}"),
            crlf.clone(),
        ] {
            let loaded = parse_bytes("bom.yaml", text.clone().into_bytes());
            assert!(loaded.errors.is_empty(), "{text:?}: {:?}", loaded.errors);
            assert_eq!(loaded.resources.len(), 1, "{text:?}");
            assert_eq!(loaded.resources[0].id.to_string(), "ServiceEntry data/db");
        }
    }

    #[test]
    fn malformed_yaml_names_file_and_line_and_skips_the_file() {
        let text = format!("{SE}---\nkind: ServiceEntry\nmetadata: {{name: [x\n");
        let loaded = parse_str("broken.yaml", &text);
        assert!(loaded.resources.is_empty(), "the whole file is skipped");
        assert_eq!(loaded.errors.len(), 1);
        let e = &loaded.errors[0];
        assert_eq!(&*e.file, "broken.yaml");
        assert!(loaded.unreadable);
        assert!(e.message().contains("line 17"), "{e}");
        assert!(e.message().contains("file skipped"), "{e}");
    }

    #[test]
    fn duplicate_keys_are_syntax_errors_with_a_line() {
        let loaded = parse_str("dup.yaml", "kind: ServiceEntry\nkind: VirtualService\n");
        assert_eq!(loaded.errors.len(), 1);
        assert!(
            loaded.errors[0].message().contains("line "),
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
            loaded.warnings[0].resource().as_deref(),
            Some("ConfigMap default/c")
        );
        assert!(
            loaded.warnings[1]
                .message()
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
        assert_eq!(&*dr.subsets[1].name, "v2");
        assert_eq!(&dr.subsets[1].labels["version"], "v1");
    }

    #[test]
    fn a_document_that_is_a_string_or_a_list_makes_the_whole_file_unreadable() {
        for garbage in [
            "this is not yaml at all, just a line of text\n",
            "- a\n- b\n",
            "42\n",
            &format!("{SE}---\njunk appended by a broken generator\n"),
        ] {
            let parsed = parse_str("g.yaml", garbage);
            assert!(parsed.unreadable, "{garbage:?}: {parsed:?}");
            assert!(parsed.resources.is_empty(), "{garbage:?}");
            assert_eq!(parsed.errors.len(), 1, "{garbage:?}");
            let e = parsed.errors[0].to_string();
            assert!(e.contains("g.yaml") && e.contains("not a manifest"), "{e}");
        }
    }

    #[test]
    fn non_utf8_is_rejected_whole() {
        let parsed = parse_bytes("bin.yaml", b"kind: \xff\n".to_vec());
        assert_eq!(parsed.errors.len(), 1);
        assert!(parsed.errors[0].message().contains("UTF-8"));
        assert!(parsed.unreadable);
    }

    /// Input a careless writer or a broken disk produces: every prefix of the examples (a
    /// file cut at any byte) and bytes overwritten at random. The parser must never panic,
    /// and whatever it cannot read it must say so (the file then keeps its last good
    /// resources), never return nothing silently.
    #[test]
    fn cut_and_scrambled_examples_never_panic() {
        let examples = [
            include_str!("../../examples/details.yaml"),
            include_str!("../../examples/ratings.yaml"),
            include_str!("../../examples/reviews.yaml"),
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            // xorshift64*: deterministic, so a failure replays.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for text in examples {
            let bytes = text.as_bytes();
            for cut in 0..=bytes.len() {
                let parsed = parse_bytes("cut.yaml", bytes[..cut].to_vec());
                assert!(
                    !parsed.unreadable || !parsed.errors.is_empty(),
                    "cut at {cut}: unreadable without a reason"
                );
            }
            for _ in 0..300 {
                let mut scrambled = bytes.to_vec();
                for _ in 0..1 + next() % 8 {
                    let at = (next() % scrambled.len() as u64) as usize;
                    scrambled[at] = (next() % 256) as u8;
                }
                let parsed = parse_bytes("scrambled.yaml", scrambled);
                assert!(!parsed.unreadable || !parsed.errors.is_empty());
            }
        }
    }

    /// Inputs the `parse` fuzz target once failed on (`fuzz/regressions/parse/`), checked as
    /// that target checks them.
    #[test]
    fn fuzz_regressions_parse() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/parse");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                continue;
            }
            let parsed = parse_bytes("fuzz.yaml", std::fs::read(&path).unwrap());
            assert!(
                !parsed.unreadable || !parsed.errors.is_empty(),
                "{}",
                path.display()
            );
            if parsed.unreadable {
                assert!(parsed.resources.is_empty(), "{}", path.display());
            }
            for error in parsed.errors.iter().chain(&parsed.warnings) {
                let _ = error.to_string();
            }
        }
    }
}
