//! Header operation values as Envoy reads them: plain text with `%%` for a literal `%` and
//! command operators (`%DOWNSTREAM_REMOTE_ADDRESS%`, `%REQ(x-user?x-id):10%`, ...), the
//! substitution format of its access logs. Parsed once, by the compiler to reject what Envoy
//! would reject (an unknown operator, a stray `%`, parameters or a length where the operator
//! takes none), and by the proxy to build each value once per table.

use std::fmt;

/// One part of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Op {
        op: Operator,
        /// `:N`: at most N bytes of the operator's value.
        max_len: Option<usize>,
    },
}

/// The command operators the proxy can give a value, and the rest of Envoy's (which have no
/// value in vsteer's proxy and expand to nothing, as Envoy expands an unset one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// The client's address (`ip:port`, or without the port, or the port alone).
    DownstreamRemote(AddressPart),
    /// The address the client dialed (the VIP:port, as a sidecar's original-destination
    /// listener sees it).
    DownstreamLocal(AddressPart),
    /// The proxy's own listen address the connection arrived on.
    DownstreamDirectLocal(AddressPart),
    /// The endpoint the request is sent to.
    UpstreamRemote(AddressPart),
    /// The destination's cluster name (`outbound|9080|v2|reviews.default.svc.cluster.local`).
    UpstreamCluster,
    /// The downstream protocol: `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    Protocol,
    /// The upstream protocol.
    UpstreamProtocol,
    /// The node's host name.
    Hostname,
    /// When the request started (UTC), in `format` (strftime-like; Envoy's default when
    /// absent).
    StartTime(Option<String>),
    /// When the value is written.
    EmitTime(Option<String>),
    /// A request header, or `alternative` when it is absent.
    Req {
        header: String,
        alternative: Option<String>,
    },
    /// An environment variable of the agent.
    Environment(String),
    /// The rule's `name`.
    RouteName,
    /// A random UUID per use.
    UniqueId,
    /// A query parameter of the request (first value, as sent).
    QueryParam(String),
    /// An operator Envoy knows that has no value here (TLS, metadata, timings, response
    /// data in a request, ...): expands to nothing.
    Unavailable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPart {
    WithPort,
    WithoutPort,
    Port,
}

/// Why a value is not a valid Envoy format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// A `%` that opens no valid command (byte offset of the `%`).
    NoCommand(usize),
    Unknown(String),
    TakesNothing(String),
    NeedsParameter(String),
    NoLength(String),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::NoCommand(at) => write!(
                f,
                "no valid command operator at position {at} (a literal % is written %%)"
            ),
            FormatError::Unknown(name) => {
                write!(f, "unknown command operator %{name}% (Envoy rejects it)")
            }
            FormatError::TakesNothing(name) => {
                write!(f, "%{name}% takes no parameters and no length")
            }
            FormatError::NeedsParameter(name) => write!(f, "%{name}(...)% needs a parameter"),
            FormatError::NoLength(name) => write!(f, "%{name}% takes no :length"),
        }
    }
}

impl std::error::Error for FormatError {}

/// What an operator accepts (Envoy's command syntax flags).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Syntax {
    CommandOnly,
    Optional,
    Required,
    RequiredWithLength,
    OptionalWithLength,
}

/// Every operator Envoy's HTTP substitution formatter knows, with its syntax.
fn syntax(name: &str) -> Option<Syntax> {
    use Syntax::*;
    Some(match name {
        "REQ" | "RESP" | "TRAILER" | "STREAM_INFO_REQ" | "QUERY_PARAM" | "ENVIRONMENT"
        | "REQ_WITHOUT_QUERY" => RequiredWithLength,
        "FILTER_STATE" | "UPSTREAM_FILTER_STATE" | "PATH" => OptionalWithLength,
        "DYNAMIC_METADATA" | "CLUSTER_METADATA" | "UPSTREAM_METADATA" | "COMMON_DURATION"
        | "METADATA" | "CEL" => Required,
        "START_TIME"
        | "START_TIME_LOCAL"
        | "EMIT_TIME"
        | "EMIT_TIME_LOCAL"
        | "RESPONSE_CODE_DETAILS"
        | "GRPC_STATUS"
        | "DOWNSTREAM_PEER_CERT_V_START"
        | "DOWNSTREAM_PEER_CERT_V_END"
        | "UPSTREAM_PEER_CERT_V_START"
        | "UPSTREAM_PEER_CERT_V_END" => Optional,
        "REQUEST_DURATION"
        | "REQUEST_TX_DURATION"
        | "RESPONSE_DURATION"
        | "RESPONSE_TX_DURATION"
        | "DOWNSTREAM_HANDSHAKE_DURATION"
        | "ROUNDTRIP_DURATION"
        | "BYTES_RECEIVED"
        | "BYTES_RETRANSMITTED"
        | "PACKETS_RETRANSMITTED"
        | "UPSTREAM_WIRE_BYTES_RECEIVED"
        | "UPSTREAM_HEADER_BYTES_RECEIVED"
        | "UPSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED"
        | "DOWNSTREAM_WIRE_BYTES_RECEIVED"
        | "DOWNSTREAM_HEADER_BYTES_RECEIVED"
        | "DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED"
        | "PROTOCOL"
        | "UPSTREAM_PROTOCOL"
        | "RESPONSE_CODE"
        | "CONNECTION_TERMINATION_DETAILS"
        | "BYTES_SENT"
        | "UPSTREAM_WIRE_BYTES_SENT"
        | "UPSTREAM_HEADER_BYTES_SENT"
        | "UPSTREAM_DECOMPRESSED_HEADER_BYTES_SENT"
        | "DOWNSTREAM_WIRE_BYTES_SENT"
        | "DOWNSTREAM_HEADER_BYTES_SENT"
        | "DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_SENT"
        | "DURATION"
        | "CUSTOM_FLAGS"
        | "RESPONSE_FLAGS"
        | "RESPONSE_FLAGS_LONG"
        | "UPSTREAM_HOST_NAME"
        | "UPSTREAM_HOST_NAME_WITHOUT_PORT"
        | "UPSTREAM_HOST"
        | "UPSTREAM_CONNECTION_ID"
        | "UPSTREAM_CLUSTER"
        | "UPSTREAM_CLUSTER_RAW"
        | "UPSTREAM_LOCAL_ADDRESS"
        | "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT"
        | "UPSTREAM_LOCAL_PORT"
        | "UPSTREAM_REMOTE_ADDRESS"
        | "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT"
        | "UPSTREAM_REMOTE_PORT"
        | "UPSTREAM_REQUEST_ATTEMPT_COUNT"
        | "UPSTREAM_TLS_CIPHER"
        | "UPSTREAM_TLS_VERSION"
        | "UPSTREAM_TLS_SESSION_ID"
        | "UPSTREAM_PEER_ISSUER"
        | "UPSTREAM_PEER_CERT"
        | "UPSTREAM_PEER_SUBJECT"
        | "DOWNSTREAM_LOCAL_ADDRESS"
        | "DOWNSTREAM_DIRECT_LOCAL_ADDRESS"
        | "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT"
        | "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT"
        | "DOWNSTREAM_LOCAL_PORT"
        | "DOWNSTREAM_DIRECT_LOCAL_PORT"
        | "DOWNSTREAM_REMOTE_ADDRESS"
        | "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT"
        | "DOWNSTREAM_REMOTE_PORT"
        | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS"
        | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT"
        | "DOWNSTREAM_DIRECT_REMOTE_PORT"
        | "CONNECTION_ID"
        | "REQUESTED_SERVER_NAME"
        | "ROUTE_NAME"
        | "UPSTREAM_PEER_URI_SAN"
        | "UPSTREAM_PEER_DNS_SAN"
        | "UPSTREAM_PEER_IP_SAN"
        | "UPSTREAM_LOCAL_URI_SAN"
        | "UPSTREAM_LOCAL_DNS_SAN"
        | "UPSTREAM_LOCAL_IP_SAN"
        | "DOWNSTREAM_PEER_URI_SAN"
        | "DOWNSTREAM_PEER_DNS_SAN"
        | "DOWNSTREAM_PEER_IP_SAN"
        | "DOWNSTREAM_PEER_EMAIL_SAN"
        | "DOWNSTREAM_PEER_OTHERNAME_SAN"
        | "DOWNSTREAM_LOCAL_URI_SAN"
        | "DOWNSTREAM_LOCAL_DNS_SAN"
        | "DOWNSTREAM_LOCAL_IP_SAN"
        | "DOWNSTREAM_LOCAL_EMAIL_SAN"
        | "DOWNSTREAM_LOCAL_OTHERNAME_SAN"
        | "DOWNSTREAM_PEER_SUBJECT"
        | "DOWNSTREAM_LOCAL_SUBJECT"
        | "DOWNSTREAM_TLS_SESSION_ID"
        | "DOWNSTREAM_TLS_CIPHER"
        | "DOWNSTREAM_TLS_VERSION"
        | "DOWNSTREAM_PEER_FINGERPRINT_256"
        | "DOWNSTREAM_PEER_FINGERPRINT_1"
        | "DOWNSTREAM_PEER_SERIAL"
        | "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_256"
        | "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_1"
        | "DOWNSTREAM_PEER_CHAIN_SERIALS"
        | "DOWNSTREAM_PEER_ISSUER"
        | "DOWNSTREAM_PEER_CERT"
        | "DOWNSTREAM_TRANSPORT_FAILURE_REASON"
        | "UPSTREAM_TRANSPORT_FAILURE_REASON"
        | "HOSTNAME"
        | "FILTER_CHAIN_NAME"
        | "VIRTUAL_CLUSTER_NAME"
        | "TLS_JA3_FINGERPRINT"
        | "TLS_JA4_FINGERPRINT"
        | "UNIQUE_ID"
        | "STREAM_ID"
        | "UPSTREAM_CONNECTION_POOL_READY_DURATION"
        | "LOCAL_REPLY_BODY"
        | "ACCESS_LOG_TYPE"
        | "GRPC_STATUS_NUMBER"
        | "REQUEST_HEADERS_BYTES"
        | "RESPONSE_HEADERS_BYTES"
        | "RESPONSE_TRAILERS_BYTES"
        | "TRACE_ID" => CommandOnly,
        _ => return None,
    })
}

fn operator(name: &str, param: Option<&str>) -> Operator {
    use AddressPart::*;
    let param = param.unwrap_or_default();
    let time_format = || (!param.is_empty()).then(|| param.to_string());
    match name {
        "DOWNSTREAM_REMOTE_ADDRESS" | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => {
            Operator::DownstreamRemote(WithPort)
        }
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT"
        | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
            Operator::DownstreamRemote(WithoutPort)
        }
        "DOWNSTREAM_REMOTE_PORT" | "DOWNSTREAM_DIRECT_REMOTE_PORT" => {
            Operator::DownstreamRemote(Port)
        }
        "DOWNSTREAM_LOCAL_ADDRESS" => Operator::DownstreamLocal(WithPort),
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => Operator::DownstreamLocal(WithoutPort),
        "DOWNSTREAM_LOCAL_PORT" => Operator::DownstreamLocal(Port),
        "DOWNSTREAM_DIRECT_LOCAL_ADDRESS" => Operator::DownstreamDirectLocal(WithPort),
        "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT" => {
            Operator::DownstreamDirectLocal(WithoutPort)
        }
        "DOWNSTREAM_DIRECT_LOCAL_PORT" => Operator::DownstreamDirectLocal(Port),
        "UPSTREAM_REMOTE_ADDRESS" | "UPSTREAM_HOST" => Operator::UpstreamRemote(WithPort),
        "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => Operator::UpstreamRemote(WithoutPort),
        "UPSTREAM_REMOTE_PORT" => Operator::UpstreamRemote(Port),
        "UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW" => Operator::UpstreamCluster,
        "PROTOCOL" => Operator::Protocol,
        "UPSTREAM_PROTOCOL" => Operator::UpstreamProtocol,
        "HOSTNAME" => Operator::Hostname,
        "START_TIME" => Operator::StartTime(time_format()),
        "EMIT_TIME" => Operator::EmitTime(time_format()),
        "REQ" => {
            let (header, alternative) = match param.split_once('?') {
                Some((h, alt)) => (h, Some(alt.to_ascii_lowercase())),
                None => (param, None),
            };
            Operator::Req {
                header: header.to_ascii_lowercase(),
                alternative,
            }
        }
        "ENVIRONMENT" => Operator::Environment(param.to_string()),
        "ROUTE_NAME" => Operator::RouteName,
        "UNIQUE_ID" => Operator::UniqueId,
        "QUERY_PARAM" => Operator::QueryParam(param.to_string()),
        other => Operator::Unavailable(other.to_string()),
    }
}

/// Parses `value` as Envoy does; `%%` is a literal `%`.
pub fn parse(value: &str) -> Result<Vec<Piece>, FormatError> {
    let bytes = value.as_bytes();
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let Some(offset) = value[i..].find('%') else {
            text.push_str(&value[i..]);
            break;
        };
        text.push_str(&value[i..i + offset]);
        let at = i + offset;
        if bytes.get(at + 1) == Some(&b'%') {
            text.push('%');
            i = at + 2;
            continue;
        }
        let (piece, next) = command(value, at)?;
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(piece);
        i = next;
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// The command starting with the `%` at `at`: `%NAME%`, `%NAME(param)%`, with `:N` before
/// the closing `%`; and where parsing goes on.
fn command(value: &str, at: usize) -> Result<(Piece, usize), FormatError> {
    let bytes = value.as_bytes();
    let no_command = FormatError::NoCommand(at);
    let mut i = at + 1;
    let start = i;
    while i < bytes.len()
        && (bytes[i].is_ascii_uppercase() || bytes[i].is_ascii_digit() || bytes[i] == b'_')
    {
        i += 1;
    }
    if i == start {
        return Err(no_command);
    }
    let name = &value[start..i];
    let mut param = None;
    if bytes.get(i) == Some(&b'(') {
        let close = value[i..].find(')').ok_or(no_command.clone())? + i;
        param = Some(&value[i + 1..close]);
        i = close + 1;
    }
    let mut max_len = None;
    if bytes.get(i) == Some(&b':') {
        let digits = i + 1;
        let mut end = digits;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
        }
        if end == digits {
            return Err(no_command);
        }
        max_len = Some(value[digits..end].parse().map_err(|_| no_command.clone())?);
        i = end;
    }
    if bytes.get(i) != Some(&b'%') {
        return Err(no_command);
    }
    let syntax = syntax(name).ok_or_else(|| FormatError::Unknown(name.to_string()))?;
    let has_param = param.is_some_and(|p| !p.is_empty());
    match syntax {
        Syntax::CommandOnly if has_param || max_len.is_some() => {
            return Err(FormatError::TakesNothing(name.to_string()));
        }
        Syntax::Required | Syntax::RequiredWithLength if !has_param => {
            return Err(FormatError::NeedsParameter(name.to_string()));
        }
        Syntax::Required | Syntax::Optional if max_len.is_some() => {
            return Err(FormatError::NoLength(name.to_string()));
        }
        _ => {}
    }
    Ok((
        Piece::Op {
            op: operator(name, param),
            max_len,
        },
        i + 1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(op: Operator) -> Piece {
        Piece::Op { op, max_len: None }
    }

    #[test]
    fn text_and_escaped_percent() {
        assert_eq!(parse("plain").unwrap(), [Piece::Text("plain".into())]);
        assert_eq!(parse("100%%").unwrap(), [Piece::Text("100%".into())]);
        assert_eq!(parse("").unwrap(), []);
    }

    #[test]
    fn operators_with_parameters_and_lengths() {
        assert_eq!(
            parse("ip=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%;%%").unwrap(),
            [
                Piece::Text("ip=".into()),
                op(Operator::DownstreamRemote(AddressPart::WithoutPort)),
                Piece::Text(";%".into()),
            ]
        );
        assert_eq!(
            parse("%REQ(X-User?:Authority):4%").unwrap(),
            [Piece::Op {
                op: Operator::Req {
                    header: "x-user".into(),
                    alternative: Some(":authority".into())
                },
                max_len: Some(4)
            }]
        );
        assert_eq!(
            parse("%START_TIME(%s)%").unwrap(),
            [op(Operator::StartTime(Some("%s".into())))]
        );
        assert_eq!(
            parse("%RESPONSE_FLAGS%").unwrap(),
            [op(Operator::Unavailable("RESPONSE_FLAGS".into()))]
        );
    }

    #[test]
    fn what_envoy_rejects() {
        assert_eq!(parse("50%"), Err(FormatError::NoCommand(2)));
        assert_eq!(parse("a%b%"), Err(FormatError::NoCommand(1)));
        assert_eq!(parse("%NOPE%"), Err(FormatError::Unknown("NOPE".into())));
        assert_eq!(
            parse("%PROTOCOL(x)%"),
            Err(FormatError::TakesNothing("PROTOCOL".into()))
        );
        assert_eq!(
            parse("%PROTOCOL:3%"),
            Err(FormatError::TakesNothing("PROTOCOL".into()))
        );
        assert_eq!(
            parse("%REQ%"),
            Err(FormatError::NeedsParameter("REQ".into()))
        );
        assert_eq!(
            parse("%START_TIME:3%"),
            Err(FormatError::NoLength("START_TIME".into()))
        );
        assert_eq!(parse("%REQ(x"), Err(FormatError::NoCommand(0)));
    }
}
