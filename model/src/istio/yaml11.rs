//! Boolean fields as kubectl reads them. kubectl parses YAML 1.1 (go-yaml v2), where an
//! unquoted `yes`, `on`, `y` (and their `no`/`off`/`n` opposites) are booleans; serde_yaml
//! parses YAML 1.2, where they are strings. Every boolean field of the model is read through
//! here so that manifests `kubectl apply` accepts are accepted too.

use std::fmt;

use serde::Deserializer;
use serde::de::{Error, Unexpected, Visitor};

/// The words go-yaml v2 resolves to booleans, as kubectl reads them (`true`, `True` and
/// `TRUE` are booleans in YAML 1.2 as well).
fn word(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            Some(false)
        }
        _ => None,
    }
}

struct Yaml11Bool;

impl Visitor<'_> for Yaml11Bool {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a boolean (true or false; kubectl's YAML 1.1 yes/no, on/off, y/n too)")
    }

    fn visit_bool<E: Error>(self, value: bool) -> Result<bool, E> {
        Ok(value)
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<bool, E> {
        word(text).ok_or_else(|| E::invalid_value(Unexpected::Str(text), &self))
    }
}

/// For `#[serde(deserialize_with = "yaml11::bool")]`.
pub fn bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    deserializer.deserialize_any(Yaml11Bool)
}

/// For `#[serde(default, deserialize_with = "yaml11::option_bool")]`: a missing field is
/// `None` by `default` (nulls are dropped before decoding, as Kubernetes does).
pub fn option_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    bool(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Flags {
        #[serde(default, deserialize_with = "super::bool")]
        plain: bool,
        #[serde(default, deserialize_with = "super::option_bool")]
        optional: Option<bool>,
    }

    fn read(yaml: &str) -> Result<Flags, String> {
        crate::yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn kubectls_yaml_1_1_words_are_booleans() {
        for (text, value) in [
            ("yes", true),
            ("Yes", true),
            ("ON", true),
            ("y", true),
            ("true", true),
            ("\"true\"", true),
            ("no", false),
            ("Off", false),
            ("N", false),
            ("FALSE", false),
        ] {
            let flags = read(&format!("{{plain: {text}, optional: {text}}}")).unwrap();
            assert_eq!(
                (flags.plain, flags.optional),
                (value, Some(value)),
                "{text}"
            );
        }
        let absent = read("{}").unwrap();
        assert_eq!((absent.plain, absent.optional), (false, None));
    }

    #[test]
    fn other_values_are_errors_that_say_what_is_expected() {
        for text in ["maybe", "1", "yess", "[true]"] {
            let error = read(&format!("{{optional: {text}}}")).unwrap_err();
            assert!(error.contains("expected a boolean"), "{text}: {error}");
        }
    }
}
