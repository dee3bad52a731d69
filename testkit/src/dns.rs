//! A DNS server for tests: answers A and AAAA queries from a table the test changes while
//! it runs (names, addresses, TTL), or fails every query with SERVFAIL; counts the queries.
//! It listens on UDP inside the test's namespace and is stopped when dropped. Messages are
//! encoded and decoded by hickory-proto.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};

use crate::NetNs;

/// What the server answers.
#[derive(Debug, Default)]
struct Zone {
    /// By name, lowercase, without the final dot.
    names: HashMap<String, Vec<IpAddr>>,
    ttl: u32,
    failing: bool,
    /// AAAA queries fail with SERVFAIL while A queries are answered.
    failing_aaaa: bool,
    /// A queries received, by name.
    a_queries: HashMap<String, u64>,
}

pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl DnsServer {
    /// Listens on UDP `addr` inside `ns`, answering with TTL `ttl` seconds.
    pub fn start(ns: &NetNs, addr: SocketAddr, ttl: u32) -> Result<DnsServer> {
        let socket = ns
            .run(move || UdpSocket::bind(addr))?
            .with_context(|| format!("binding the test DNS server to {addr}"))?;
        // Bounded waits, so the thread sees `stop`.
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let zone = Arc::new(Mutex::new(Zone {
            ttl,
            ..Zone::default()
        }));
        let queries = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (zone, queries, stop) = (zone.clone(), queries.clone(), stop.clone());
            std::thread::spawn(move || serve(&socket, &zone, &queries, &stop))
        };
        Ok(DnsServer {
            addr,
            zone,
            queries,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `name` answers `addresses` from now on (none: NODATA).
    pub fn set(&self, name: &str, addresses: &[IpAddr]) {
        let mut zone = self.zone.lock().expect("zone lock");
        zone.names.insert(key(name), addresses.to_vec());
    }

    /// Every query fails with SERVFAIL while `failing`.
    pub fn set_failing(&self, failing: bool) {
        self.zone.lock().expect("zone lock").failing = failing;
    }

    /// AAAA queries fail with SERVFAIL while `failing` (A queries are answered).
    pub fn set_failing_aaaa(&self, failing: bool) {
        self.zone.lock().expect("zone lock").failing_aaaa = failing;
    }

    /// A queries received for `name` so far.
    pub fn a_queries(&self, name: &str) -> u64 {
        let zone = self.zone.lock().expect("zone lock");
        zone.a_queries.get(&key(name)).copied().unwrap_or(0)
    }

    /// Queries received so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn serve(
    socket: &UdpSocket,
    zone: &Mutex<Zone>,
    queries: &AtomicU64,
    stop: &AtomicBool,
) -> Result<()> {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(err) => return Err(err).context("test DNS server: recv"),
        };
        // Not DNS: ignored, as a server would.
        let Ok(request) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        queries.fetch_add(1, Ordering::Relaxed);
        let reply = {
            let mut zone = zone.lock().expect("zone lock");
            for query in &request.queries {
                if query.query_type() == RecordType::A {
                    *zone
                        .a_queries
                        .entry(key(&query.name().to_ascii()))
                        .or_default() += 1;
                }
            }
            answer(&request, &zone)
        };
        if let Ok(bytes) = reply.to_vec() {
            let _ = socket.send_to(&bytes, peer);
        }
    }
    Ok(())
}

fn answer(request: &Message, zone: &Zone) -> Message {
    let id = request.metadata.id;
    let aaaa = request
        .queries
        .iter()
        .any(|q| q.query_type() == RecordType::AAAA);
    if zone.failing || (zone.failing_aaaa && aaaa) {
        let mut reply = Message::error_msg(id, OpCode::Query, ResponseCode::ServFail);
        reply.add_queries(request.queries.iter().cloned());
        return reply;
    }
    let mut reply = Message::response(id, OpCode::Query);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    for query in &request.queries {
        reply.add_query(query.clone());
        let name = key(&query.name().to_ascii());
        let Some(addresses) = zone.names.get(&name) else {
            reply.metadata.response_code = ResponseCode::NXDomain;
            continue;
        };
        for ip in addresses {
            let rdata = match (ip, query.query_type()) {
                (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                _ => continue,
            };
            reply.add_answer(Record::from_rdata(query.name().clone(), zone.ttl, rdata));
        }
    }
    reply
}
