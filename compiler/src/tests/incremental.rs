//! The incremental compiler against compiling from scratch: after any sequence of changes,
//! `Compiler::update` must give the plan, errors, notes and kept services that `compile`
//! gives for the same resources with the same last good plan.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use vsteer_model::{Resource, ResourceId};

use super::*;

/// A small deterministic generator (xorshift*), so one proptest seed is one scenario.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const HOSTS: [&str; 4] = ["a", "b", "c", "d"];
const SUBSETS: [&str; 3] = ["v1", "v2", "v9"];

/// One resource of kind `kind` numbered `n`, as YAML, drawn at random: a universe small
/// enough that VIPs collide, hosts are shared, subsets go missing and rules conflict.
fn resource(kind: usize, n: usize, rng: &mut Rng) -> String {
    match kind {
        0 => {
            let host = rng.pick(&HOSTS);
            let vip = rng.below(5);
            let second = if rng.chance(20) {
                format!(", 10.0.0.{}", rng.below(5))
            } else {
                String::new()
            };
            let protocol = rng.pick(&["HTTP", "TCP", "HTTP", "UDP"]);
            let bad = if rng.chance(10) { "nope" } else { "10.1.0.1" };
            format!(
                "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: se{n}}}
spec:
  hosts: [{host}.default.svc.cluster.local]
  addresses: [10.0.0.{vip}{second}]
  ports: [{{number: 80, name: p, protocol: {protocol}}}]
  resolution: STATIC
  endpoints:
  - {{address: {bad}, labels: {{version: v1}}}}
  - {{address: 10.1.{n}.2, labels: {{version: v2}}}}
"
            )
        }
        1 => {
            let host = if rng.chance(15) {
                "'*.svc.cluster.local'"
            } else {
                rng.pick(&HOSTS)
            };
            let lb = rng.pick(&[
                "{simple: ROUND_ROBIN}",
                "{consistentHash: {useSourceIp: true}}",
                "{simple: PASSTHROUGH}",
                "{simple: FASTEST}",
                "{simple: RANDOM}",
            ]);
            format!(
                "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: dr{n}}}
spec:
  host: {host}
  trafficPolicy: {{loadBalancer: {lb}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"
            )
        }
        _ if rng.chance(20) => {
            // A delegate: no hosts, its rules stand in a root's (below).
            let to = rng.pick(&HOSTS);
            let subset = rng.pick(&SUBSETS);
            let prefix = rng.pick(&["/a", "/b", "/"]);
            format!(
                "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs{n}}}
spec:
  http:
  - match: [{{uri: {{prefix: {prefix}}}}}]
    route: [{{destination: {{host: {to}, subset: {subset}}}}}]
  - route: [{{destination: {{host: {to}}}}}]
"
            )
        }
        _ => {
            let host = if rng.chance(10) {
                "'*.svc.cluster.local'".to_string()
            } else if rng.chance(10) {
                format!("10.0.0.{}", rng.below(5))
            } else {
                rng.pick(&HOSTS).to_string()
            };
            let to = rng.pick(&HOSTS);
            let other = rng.pick(&HOSTS);
            let (s1, s2) = (rng.pick(&SUBSETS), rng.pick(&SUBSETS));
            let w = rng.below(101);
            let header = if rng.chance(30) {
                "  - match: [{headers: {end-user: {exact: jason}}}]\n    route: [{destination: {host: HOST}}]\n".replace("HOST", other)
            } else if rng.chance(40) {
                // Delegates to a VirtualService that may be a delegate, a root or absent.
                format!(
                    "  - match: [{{uri: {{prefix: /a}}}}]\n    delegate: {{name: vs{}}}\n",
                    rng.below(4)
                )
            } else {
                String::new()
            };
            format!(
                "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs{n}}}
spec:
  hosts: [{host}]
  http:
{header}  - route:
    - {{destination: {{host: {to}, subset: {s1}}}, weight: {w}}}
    - {{destination: {{host: {other}, subset: {s2}}}, weight: {}}}
  tcp:
  - route: [{{destination: {{host: {other}}}}}]
",
                100 - w
            )
        }
    }
}

/// A config: resource slot -> its YAML (a slot may be empty).
type Config = BTreeMap<(usize, usize), String>;

fn parse(config: &Config) -> Vec<Resource> {
    let text = config
        .values()
        .map(|yaml| format!("---\n{yaml}"))
        .collect::<String>();
    let parsed = parse_str("t.yaml", &text);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    parsed.resources
}

fn by_id(resources: &[Resource]) -> BTreeMap<ResourceId, Resource> {
    resources
        .iter()
        .map(|r| (r.id.clone(), r.clone()))
        .collect()
}

fn sorted(items: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    items.into_iter().collect()
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed | 1);
    let mut config = Config::new();
    for kind in 0..3 {
        for n in 0..4 {
            if rng.chance(70) {
                config.insert((kind, n), resource(kind, n, &mut rng));
            }
        }
    }
    let mut compiler = Compiler::default();
    let mut previous: BTreeMap<ResourceId, Resource> = BTreeMap::new();
    let mut last_good = Plan::default();
    for step in 0..steps {
        let resources = parse(&config);
        let now = by_id(&resources);
        let mut changes: Vec<Change> = Vec::new();
        for (id, resource) in &now {
            if previous.get(id) != Some(resource) {
                changes.push((id.clone(), Some(Arc::new(resource.clone()))));
            }
        }
        for id in previous.keys() {
            if !now.contains_key(id) {
                changes.push((id.clone(), None));
            }
        }
        let update = compiler.update(&changes);
        if std::env::var("VSTEER_SEED").is_ok() {
            let ids: Vec<String> = changes
                .iter()
                .map(|(id, r)| format!("{id}{}", if r.is_none() { " (removed)" } else { "" }))
                .collect();
            eprintln!("step {step}: {ids:?} -> changed {:?}", update.changed);
        }
        let expected = compile(&resources, &last_good);
        if std::env::var("VSTEER_SEED").is_ok() {
            for e in &expected.errors {
                eprintln!("  expected error: {e}");
            }
            for n in &expected.notes {
                eprintln!("  expected note: {n}");
            }
        }
        let context = || {
            format!(
                "seed {seed} step {step}\n{}",
                config.values().cloned().collect::<Vec<_>>().join("---\n")
            )
        };
        assert_eq!(compiler.plan(), &expected.plan, "{}", context());
        assert_eq!(
            sorted(compiler.errors().iter().map(ToString::to_string)),
            sorted(expected.errors.iter().map(ToString::to_string)),
            "{}",
            context()
        );
        assert_eq!(
            sorted(compiler.notes()),
            sorted(expected.notes.clone()),
            "{}",
            context()
        );
        assert_eq!(compiler.kept(), expected.kept, "{}", context());
        last_good = expected.plan;
        previous = now;

        // One to three random edits: change, add or remove a resource.
        for _ in 0..=rng.below(3) {
            let slot = (rng.below(3) as usize, rng.below(4) as usize);
            if rng.chance(25) {
                config.remove(&slot);
            } else {
                config.insert(slot, resource(slot.0, slot.1, &mut rng));
            }
        }
    }
}

/// Deterministic seeds, so a failure in CI replays anywhere (`replay` below);
/// `VSTEER_SCENARIOS` runs more of them by hand.
#[test]
fn incremental_updates_equal_compiling_from_scratch() {
    let scenarios: u64 = std::env::var("VSTEER_SCENARIOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    for n in 0..scenarios {
        run(n.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1), 12);
    }
}

#[test]
fn a_one_service_change_recompiles_one_service() {
    let mut config = Config::new();
    let mut rng = Rng(7);
    for n in 0..200 {
        config.insert(
            (0, n),
            format!(
                "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: se{n}}}
spec:
  hosts: [s{n}.example.com]
  addresses: [10.2.{}.{}]
  ports: [{{number: 80, name: p, protocol: TCP}}]
  resolution: STATIC
  endpoints: [{{address: 10.3.0.{}}}]
",
                n / 250,
                n % 250,
                rng.below(250)
            ),
        );
    }
    let resources = parse(&config);
    let mut compiler = Compiler::default();
    let changes: Vec<Change> = resources
        .iter()
        .map(|r| (r.id.clone(), Some(Arc::new(r.clone()))))
        .collect();
    let first = compiler.update(&changes);
    assert_eq!(first.changed.len(), 200);
    let mut edited = resources[17].clone();
    let text = config[&(0, 17)].replace("10.3.0.", "10.4.0.");
    edited.spec = parse_str("t.yaml", &text).resources[0].spec.clone();
    let update = compiler.update(&[(edited.id.clone(), Some(Arc::new(edited)))]);
    assert_eq!(update.changed.len(), 1);
    assert_eq!(update.recompiled_services, 1);
}

/// Replays one seed: `VSTEER_SEED=123 cargo test -p vsteer-compiler replay -- --nocapture`.
#[test]
fn replay() {
    if let Some(seed) = std::env::var("VSTEER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run(seed, 12);
    }
}
