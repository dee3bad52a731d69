//! The L7 scenario's services, written for every peer: the seed's `reviews` (requests with
//! `end-user: jason` to v2, all others to v3) as vsteer YAML, as an nginx reverse proxy and
//! as an haproxy HTTP frontend; the nginx that serves v1, v2 and v3; and the wrk script that
//! sends the header on every other request.
use std::{fmt::Write as _, fs, net::Ipv4Addr, path::Path};

use anyhow::{Context, Result};

use super::workload;

/// The seed's example, as the agent gets it: one file, unchanged.
pub const SEED_REVIEWS: &str = include_str!("../../../examples/reviews.yaml");

/// The seed's VIP and port (checked against [`SEED_REVIEWS`] by a test).
pub const VIP: Ipv4Addr = Ipv4Addr::new(127, 100, 0, 1);
pub const PORT: u16 = 9080;
/// The seed's endpoints: v1 (no traffic: no rule sends any), v2 (jason), v3 (everyone else).
pub const BACKENDS: [(&str, Ipv4Addr); 3] = [
    ("v1", Ipv4Addr::new(127, 0, 1, 1)),
    ("v2", Ipv4Addr::new(127, 0, 1, 2)),
    ("v3", Ipv4Addr::new(127, 0, 1, 3)),
];
/// The backends' HTTP/1.1 port (the seed's) and their h2c (HTTP/2 prior knowledge) port: the
/// direct variant's HTTP/2 load talks HTTP/2 to v3 itself.
pub const BACKEND_PORT: u16 = 9080;
pub const BACKEND_H2_PORT: u16 = 9081;
/// nginx's and haproxy's frontends: addresses of their own, so every peer stays up while
/// vsteer steers [`VIP`]; HTTP/1.1 on [`PORT`], h2c on [`H2_PORT`] (nginx 1.22 serves h2c
/// prior knowledge only on a listener of its own).
pub const NGINX: Ipv4Addr = Ipv4Addr::new(127, 100, 0, 3);
pub const HAPROXY: Ipv4Addr = Ipv4Addr::new(127, 100, 0, 4);
pub const H2_PORT: u16 = 9081;
/// The header and value of the seed's first rule.
pub const HEADER: &str = "end-user";
pub const JASON: &str = "jason";
/// What the backends answer: a small fixed body naming the version.
pub fn body(version: &str) -> String {
    format!("reviews {version}\n")
}
/// nginx's default is 1,000 requests per keep-alive connection, then a close: the load's
/// connections (and the peers' pooled upstream ones) stay open for the whole run instead, as
/// hyper's and haproxy's do.
const KEEPALIVE_REQUESTS: u64 = 100_000_000;

/// Writes the agent's config directory: the seed's `reviews` (proxied: its first rule reads
/// a header) and the connect scenario's 4-backend TCP service (the kernel path, measured with
/// the proxy running).
pub fn write_vsteer_config(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("reviews.yaml");
    fs::write(&file, SEED_REVIEWS).with_context(|| format!("writing {}", file.display()))?;
    workload::write_measured(dir, 0)
}

/// The settings every nginx of the bench shares: one worker, in the foreground, one process
/// (its pid is the one to measure and to stop), everything it writes under `prefix`.
fn nginx_globals(prefix: &Path, name: &str) -> String {
    let p = prefix.display();
    format!(
        "worker_processes 1;
daemon off;
master_process off;
pid {p}/{name}.pid;
error_log {p}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {p}/{name}-tmp/body;
    proxy_temp_path {p}/{name}-tmp/proxy;
    fastcgi_temp_path {p}/{name}-tmp/fastcgi;
    uwsgi_temp_path {p}/{name}-tmp/uwsgi;
    scgi_temp_path {p}/{name}-tmp/scgi;
    keepalive_requests {KEEPALIVE_REQUESTS};
    keepalive_timeout 300s;
"
    )
}

/// The backends: one nginx worker with one server per version, a fixed body, HTTP/1.1 on
/// [`BACKEND_PORT`] and h2c on [`BACKEND_H2_PORT`].
pub fn nginx_backends_config(prefix: &Path) -> String {
    let mut cfg = nginx_globals(prefix, "backends");
    cfg.push_str("    default_type text/plain;\n");
    for (version, addr) in BACKENDS {
        let _ = writeln!(
            cfg,
            "    server {{
        listen {addr}:{BACKEND_PORT};
        listen {addr}:{BACKEND_H2_PORT} http2;
        location / {{ return 200 \"{}\"; }}
    }}",
            body(version).escape_default()
        );
    }
    cfg.push_str("}\n");
    cfg
}

/// nginx as the header-routing reverse proxy: `map $http_end_user` picks the upstream,
/// upstreams keep idle connections (HTTP/1.1, no `Connection` header), one worker.
pub fn nginx_proxy_config(prefix: &Path) -> String {
    let mut cfg = nginx_globals(prefix, "proxy");
    let _ = writeln!(
        cfg,
        "    map $http_{} $pool {{ {JASON} reviews_v2; default reviews_v3; }}",
        HEADER.replace('-', "_")
    );
    for (version, addr) in &BACKENDS[1..] {
        let _ = writeln!(
            cfg,
            "    upstream reviews_{version} {{
        server {addr}:{BACKEND_PORT};
        keepalive 256;
        keepalive_requests {KEEPALIVE_REQUESTS};
        keepalive_timeout 300s;
    }}"
        );
    }
    let _ = writeln!(
        cfg,
        "    server {{
        listen {NGINX}:{PORT};
        listen {NGINX}:{H2_PORT} http2;
        location / {{
            proxy_pass http://$pool;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
}}"
    );
    cfg
}

/// haproxy as the header-routing proxy: an acl on the header picks the backend, one thread,
/// idle server connections shared (`http-reuse always`); h2c on a `proto h2` bind.
pub fn haproxy_config() -> String {
    let mut cfg = format!(
        "global
    nbthread 1
    maxconn 4000

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always

frontend reviews
    bind {HAPROXY}:{PORT}
    bind {HAPROXY}:{H2_PORT} proto h2
    use_backend reviews_v2 if {{ req.hdr({HEADER}) -m str {JASON} }}
    default_backend reviews_v3
"
    );
    for (version, addr) in &BACKENDS[1..] {
        let _ = write!(
            cfg,
            "
backend reviews_{version}
    server {version} {addr}:{BACKEND_PORT}
"
        );
    }
    cfg
}

/// wrk's script: every connection alternates a request with `end-user: jason` (to v2) and
/// one without (to v3), so each keep-alive connection is routed request by request; `done`
/// prints one line of numbers for the bench to read (latencies in µs).
pub fn wrk_script() -> String {
    format!(
        "local reqs = {{}}
local n = 0
init = function(args)
  reqs[1] = wrk.format(\"GET\", \"/\", {{[\"{HEADER}\"] = \"{JASON}\"}})
  reqs[2] = wrk.format(\"GET\", \"/\", {{}})
end
request = function()
  n = n + 1
  return reqs[n % 2 + 1]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(\"{WRK_LINE} requests=%d duration_us=%d p50_us=%d p99_us=%d \" ..
    \"connect=%d read=%d write=%d status=%d timeout=%d\\n\", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99), e.connect, e.read,
    e.write, e.status, e.timeout))
end
"
    )
}

/// The first word of the line the wrk script prints.
pub const WRK_LINE: &str = "vsteer-bench-wrk";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_is_what_the_peers_are_configured_for() {
        // The peers' configs are written from the constants; the agent reads the seed itself.
        assert!(SEED_REVIEWS.contains(&format!("- {VIP}\n")));
        assert!(SEED_REVIEWS.contains(&format!("number: {PORT}\n")));
        assert!(SEED_REVIEWS.contains("protocol: HTTP\n"));
        assert!(SEED_REVIEWS.contains(&format!("http: {BACKEND_PORT}\n")));
        for (version, addr) in BACKENDS {
            let endpoint = format!("- address: {addr}\n");
            let at = SEED_REVIEWS.find(&endpoint).expect("endpoint in the seed");
            let label = format!("version: {version}\n");
            let next = SEED_REVIEWS[at..].find(&label).expect("its version label");
            assert!(
                !SEED_REVIEWS[at + endpoint.len()..at + next].contains("- address"),
                "{addr} is not labelled {version}"
            );
        }
        assert!(SEED_REVIEWS.contains(&format!("{HEADER}:\n          exact: {JASON}\n")));
        // The VIP's IP is also the kernel-path service's, on another port.
        assert_eq!(workload::VIP, VIP);
        assert_ne!(workload::PORT, PORT);
    }

    #[test]
    fn nginx_configs_stay_under_their_prefix_and_route_by_the_header() {
        let prefix = Path::new("/tmp/bench-work/l7");
        for cfg in [nginx_backends_config(prefix), nginx_proxy_config(prefix)] {
            // Every absolute path (a word starting with `/`) is under the prefix.
            for word in cfg
                .split_whitespace()
                .filter(|w| w.starts_with('/') && *w != "/")
            {
                assert!(word.starts_with("/tmp/bench-work/l7/"), "{word}");
            }
            assert!(cfg.contains("worker_processes 1;\ndaemon off;\nmaster_process off;\n"));
            assert_eq!(cfg.matches('{').count(), cfg.matches('}').count(), "{cfg}");
        }
        let backends = nginx_backends_config(prefix);
        assert!(backends.contains("listen 127.0.1.3:9081 http2;"));
        assert!(backends.contains("return 200 \"reviews v2\\n\";"));
        let proxy = nginx_proxy_config(prefix);
        assert!(
            proxy.contains("map $http_end_user $pool { jason reviews_v2; default reviews_v3; }")
        );
        assert!(proxy.contains("server 127.0.1.3:9080;\n        keepalive 256;"));
        assert!(proxy.contains("listen 127.100.0.3:9081 http2;"));
        assert!(!proxy.contains("127.0.1.1"), "v1 gets no traffic");
    }

    #[test]
    fn haproxy_routes_by_the_header_on_its_own_address() {
        let cfg = haproxy_config();
        assert!(cfg.contains("bind 127.100.0.4:9080\n    bind 127.100.0.4:9081 proto h2\n"));
        assert!(cfg.contains("use_backend reviews_v2 if { req.hdr(end-user) -m str jason }"));
        assert!(cfg.contains("backend reviews_v3\n    server v3 127.0.1.3:9080\n"));
        assert!(cfg.contains("nbthread 1\n"));
        assert!(cfg.contains("http-reuse always\n"));
    }

    #[test]
    fn wrk_script_alternates_the_header() {
        let script = wrk_script();
        assert!(script.contains("{[\"end-user\"] = \"jason\"}"));
        assert!(script.contains("return reqs[n % 2 + 1]"));
        assert!(script.contains("string.format(\"vsteer-bench-wrk requests=%d"));
    }
}
