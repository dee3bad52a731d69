//! Path rewrites, as Envoy applies Istio's `rewrite`: `uri` replaces what the path condition
//! matched (Envoy's prefix_rewrite: the prefix, or the whole path of an exact or regex
//! match, the query kept), `uriRegexRewrite` substitutes every match in the path (RE2 `\1`
//! groups) and keeps the query.

use regex::Regex;
use vsteer_plan::http::Rewrite;

use crate::matching::PathMatch;

#[derive(Debug)]
pub(crate) enum PathRewrite {
    Replace(Box<str>),
    /// The pattern (unanchored: it may match several times) and the substitution in the
    /// regex crate's syntax.
    Regex(Regex, Box<str>),
}

impl PathRewrite {
    pub(crate) fn compile(rewrite: &Rewrite) -> Option<PathRewrite> {
        if let Some((pattern, substitution)) = &rewrite.uri_regex {
            return match Regex::new(pattern) {
                Ok(re) => Some(PathRewrite::Regex(
                    re,
                    re2_substitution(substitution).into(),
                )),
                Err(e) => {
                    tracing::warn!("uriRegexRewrite {pattern:?} does not compile ({e}); ignored");
                    None
                }
            };
        }
        rewrite
            .uri
            .as_deref()
            .filter(|u| !u.is_empty())
            .map(|u| PathRewrite::Replace(u.into()))
    }

    /// The new `:path` for `path_and_query`, whose path condition matched `matched`.
    pub(crate) fn apply(&self, path_and_query: &str, matched: PathMatch) -> String {
        let path_len = path_and_query.find('?').unwrap_or(path_and_query.len());
        match self {
            PathRewrite::Replace(with) => {
                let cut = match matched {
                    PathMatch::Whole => path_len,
                    PathMatch::Prefix(n) => n.min(path_and_query.len()),
                };
                let mut out = String::with_capacity(with.len() + path_and_query.len() - cut);
                out.push_str(with);
                out.push_str(&path_and_query[cut..]);
                out
            }
            PathRewrite::Regex(re, substitution) => {
                let (path, rest) = path_and_query.split_at(path_len);
                let mut out = re.replace_all(path, &**substitution).into_owned();
                out.push_str(rest);
                out
            }
        }
    }
}

/// RE2's substitution (`\1` for group 1, `\\` for a backslash) in the regex crate's syntax
/// (`${1}`, `$$` for a dollar).
fn re2_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    chars.next();
                    out.push_str("${");
                    out.push(d);
                    out.push('}');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(uri: Option<&str>, regex: Option<(&str, &str)>) -> PathRewrite {
        PathRewrite::compile(&Rewrite {
            uri: uri.map(String::from),
            authority: None,
            uri_regex: regex.map(|(p, r)| (p.to_string(), r.to_string())),
        })
        .unwrap()
    }

    #[test]
    fn prefix_and_whole_path() {
        let r = rewrite(Some("/v2/"), None);
        assert_eq!(
            r.apply("/v1/items?x=1", PathMatch::Prefix(4)),
            "/v2/items?x=1"
        );
        assert_eq!(r.apply("/exact?x=1", PathMatch::Whole), "/v2/?x=1");
        // No uri condition: Envoy's prefix `/` is what gets replaced.
        assert_eq!(r.apply("/a", PathMatch::Prefix(1)), "/v2/a");
    }

    #[test]
    fn regex_groups_and_query_kept() {
        let r = rewrite(None, Some(("^/service/([^/]+)(/.*)$", "\\2/instance/\\1")));
        assert_eq!(
            r.apply("/service/foo/v1/api?q=1", PathMatch::Whole),
            "/v1/api/instance/foo?q=1"
        );
        let all = rewrite(None, Some(("o", "0$")));
        assert_eq!(all.apply("/foo", PathMatch::Whole), "/f0$0$");
    }
}
