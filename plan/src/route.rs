//! Which rule of which VirtualService routes a service: a typed reference, printed as
//! `VirtualService default/reviews http[1]`.

use std::fmt;

use vsteer_model::ResourceId;

/// The section of a VirtualService a rule is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    Http,
    Tls,
    Tcp,
}

impl Section {
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Http => "http",
            Section::Tls => "tls",
            Section::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule of a VirtualService, or none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleRef {
    /// `http[1]`: the rule at that index of that section.
    Rule { section: Section, index: usize },
    /// The VirtualService applies, but none of its rules matches the service.
    NoMatch,
    /// No VirtualService applies: Istio's default route, every request to all endpoints of
    /// the host (the rule of an HTTP route table the proxy serves without a VirtualService).
    Default,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleRef::Rule { section, index } => write!(f, "{section}[{index}]"),
            RuleRef::NoMatch => f.write_str("(no rule matches)"),
            RuleRef::Default => f.write_str("(default route)"),
        }
    }
}

/// The rule that routes a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteRef {
    pub resource: ResourceId,
    pub rule: RuleRef,
}

impl RouteRef {
    pub fn rule(resource: &ResourceId, section: Section, index: usize) -> RouteRef {
        RouteRef {
            resource: resource.clone(),
            rule: RuleRef::Rule { section, index },
        }
    }
}

impl fmt::Display for RouteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.resource, self.rule)
    }
}

impl serde::Serialize for RouteRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use vsteer_model::Kind;

    use super::*;

    #[test]
    fn routes_print_as_messages_name_them() {
        let id = ResourceId::new(Kind::VirtualService, "default", "reviews");
        assert_eq!(
            RouteRef::rule(&id, Section::Http, 1).to_string(),
            "VirtualService default/reviews http[1]"
        );
        let none = RouteRef {
            resource: id,
            rule: RuleRef::NoMatch,
        };
        assert_eq!(
            none.to_string(),
            "VirtualService default/reviews (no rule matches)"
        );
    }
}
