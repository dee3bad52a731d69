//! Reading a page of the running agent's admin listener, for `vsteer status`: the agent's
//! process holds what the kernel maps do not (the proxy's counters, the node's pods).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long `status` waits for the agent.
const WAIT: Duration = Duration::from_secs(2);

/// What the agent answered for a page.
pub enum Answer {
    Page(String),
    /// The agent has no such page (e.g. not in Kubernetes mode).
    NotFound,
}

/// `GET path` from the agent at `admin`: its body, or why there is none.
pub fn get(admin: SocketAddr, path: &str) -> Result<Answer, String> {
    let fetch = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&admin, WAIT)?;
        stream.set_read_timeout(Some(WAIT))?;
        stream.set_write_timeout(Some(WAIT))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    };
    let text = fetch().map_err(|e| format!("no agent admin endpoint at {admin} ({e})"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(Answer::Page(body.to_string())),
        Some("404") => Ok(Answer::NotFound),
        _ => Err(format!("{admin}{path} answered {status:?}")),
    }
}
