//! Istio's L7 resilience features (issue 13) end to end: the real agent (kernel programs and
//! proxy) in a "node" namespace, clients in a "pod" namespace behind a veth pair dialing
//! VIPs, backends whose failures and delays are their own (a backend that fails every other
//! request, one that sleeps and records whether its request was dropped first). Retries,
//! injected aborts and delays, route timeouts, mirroring, and bookinfo's fault-injection
//! task with Istio's own YAML from `examples/bookinfo/`.
//!
//! They need root. Without it they skip loudly, unless VSTEER_REQUIRE_KERNEL_TESTS=1 (CI).
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::l7_stage::{L7Stage, metric, service, virtual_service};
use vsteer_testkit::http::{H1, Reply};
use vsteer_testkit::{kernel_tests_enabled, stats};

const FLAKY: &str = "127.100.13.1:80";
const FAULTY: &str = "127.100.13.2:80";
const SLOW: &str = "127.100.13.3:80";
const WEB: &str = "127.100.13.4:80";
const SHADOW: &str = "127.100.13.5:80";
/// Bookinfo's ratings VIP in `examples/bookinfo/services.yaml`.
const RATINGS: &str = "127.100.1.3:9080";

/// Every backend of [`config`]: (name, address).
const BACKENDS: [(&str, &str); 5] = [
    ("flaky-v1", "127.0.131.1:8080"),
    ("faulty-v1", "127.0.132.1:8080"),
    ("slow-v1", "127.0.133.1:8080"),
    ("web-v1", "127.0.134.1:8080"),
    ("shadow-v1", "127.0.135.1:8080"),
];

/// A service per feature, each with one endpoint; the rule is chosen by a header.
fn config() -> Vec<(&'static str, String)> {
    let http = "name: http, protocol: HTTP";
    vec![
        (
            "flaky.yaml",
            service("flaky", FLAKY, http, &[("127.0.131.1:8080", "v1")])
                + &virtual_service(
                    "flaky",
                    "  - match: [{headers: {x-retries: {exact: none}}}]
    retries: {attempts: 0}
    route: [{destination: {host: flaky, subset: v1}}]
  - match: [{headers: {x-retries: {exact: 5xx}}}]
    retries: {attempts: 2, retryOn: 5xx}
    route: [{destination: {host: flaky, subset: v1}}]
  - route: [{destination: {host: flaky, subset: v1}}]
",
                ),
        ),
        (
            "faulty.yaml",
            service("faulty", FAULTY, http, &[("127.0.132.1:8080", "v1")])
                + &virtual_service(
                    "faulty",
                    "  - match: [{headers: {x-fault: {exact: abort}}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}
    route: [{destination: {host: faulty, subset: v1}}]
  - match: [{headers: {x-fault: {exact: delay}}}]
    fault: {delay: {fixedDelay: 200ms, percentage: {value: 100}}}
    route: [{destination: {host: faulty, subset: v1}}]
  - route: [{destination: {host: faulty, subset: v1}}]
",
                ),
        ),
        (
            "slow.yaml",
            service("slow", SLOW, http, &[("127.0.133.1:8080", "v1")])
                + &virtual_service(
                    "slow",
                    "  - timeout: 100ms
    route: [{destination: {host: slow, subset: v1}}]
",
                ),
        ),
        (
            "web.yaml",
            service("web", WEB, http, &[("127.0.134.1:8080", "v1")])
                + "---\n"
                + &service("shadow", SHADOW, http, &[("127.0.135.1:8080", "v1")])
                + &virtual_service(
                    "web",
                    "  - match: [{headers: {x-mirror: {exact: \"yes\"}}}]
    mirror: {host: shadow, subset: v1}
    mirrorPercentage: {value: 100}
    route: [{destination: {host: web, subset: v1}}]
  - route: [{destination: {host: web, subset: v1}}]
",
                ),
        ),
    ]
}

fn stage() -> L7Stage {
    let stage = L7Stage::new(&BACKENDS, &config());
    // flaky, faulty, slow, web (shadow has no rules of its own).
    assert!(
        stage.agent.ready_line().contains("proxied=4"),
        "{}",
        stage.agent.ready_line()
    );
    stage
}

/// `count` GETs of `path` one after the other on `h1`, with `headers`: the replies and how
/// long each took.
async fn sequential(
    h1: &mut H1,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    count: usize,
) -> Vec<(Reply, Duration)> {
    let mut replies = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let reply = h1.get(host, path, headers).await;
        replies.push((reply, started.elapsed()));
    }
    replies
}

/// Replies by status code.
fn by_status<'a>(replies: impl IntoIterator<Item = &'a Reply>) -> BTreeMap<u16, u64> {
    let mut statuses = BTreeMap::new();
    for reply in replies {
        *statuses.entry(reply.status.as_u16()).or_default() += 1;
    }
    statuses
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A backend that fails every other request (503, by its own count): with
/// `retries: {attempts: 2, retryOn: 5xx}` each failure is retried (on the one endpoint, as
/// Envoy's previous-hosts predicate falls back to when none other is left) and the client
/// sees every request succeed; with Istio's default policy (no `retries`: 2 retries on
/// `retriable-status-codes`, 503 among them) too; with `attempts: 0` about half fail.
#[test]
fn retries_hide_a_backend_that_fails_every_other_request() {
    if !kernel_tests_enabled("retries_hide_a_backend_that_fails_every_other_request") {
        return;
    }
    const REQUESTS: usize = 1_000;
    let stage = stage();
    let backend = stage.backend("flaky-v1");
    let mut h1 = stage.h1(FLAKY);
    let metrics = stage.metrics();
    let retries_before = metric(&metrics, "vsteer_proxy_upstream_retries").expect("retries");
    // Each retry waits Envoy's back-off first (about 12 ms on average): some 25 s in all.
    let (retried, defaulted, off) = stage.block_for(Duration::from_secs(120), async {
        let retried = sequential(
            &mut h1,
            "flaky",
            "/flaky",
            &[("x-retries", "5xx")],
            REQUESTS,
        );
        let retried = retried.await;
        let defaulted = sequential(&mut h1, "flaky", "/flaky", &[], REQUESTS).await;
        let off = sequential(
            &mut h1,
            "flaky",
            "/flaky",
            &[("x-retries", "none")],
            REQUESTS,
        );
        (retried, defaulted, off.await)
    });
    let retried = by_status(retried.iter().map(|(r, _)| r));
    let defaulted = by_status(defaulted.iter().map(|(r, _)| r));
    let off = by_status(off.iter().map(|(r, _)| r));
    println!("retryOn 5xx: {retried:?}; Istio's default: {defaulted:?}; attempts 0: {off:?}");
    assert_eq!(retried, BTreeMap::from([(200, REQUESTS as u64)]));
    assert_eq!(defaulted, BTreeMap::from([(200, REQUESTS as u64)]));
    let failed = off.get(&503).copied().unwrap_or(0);
    let passed = off.get(&200).copied().unwrap_or(0);
    assert_eq!(failed + passed, REQUESTS as u64, "{off:?}");
    let (chi, p) = stats::chi_square(&[failed, passed], &[1.0, 1.0]).expect("chi-square");
    println!("attempts 0: {failed} of {REQUESTS} failed, chi-square {chi:.3}, p = {p:.3}");
    stats::assert_split(&[failed, passed], &[1.0, 1.0]).expect("about half fail");
    // The backend's own view: every try reached it, and half of its answers were 503s.
    let tries = backend.seen().len();
    let retries = metric(&stage.metrics(), "vsteer_proxy_upstream_retries").expect("retries")
        - retries_before;
    println!("backend tries {tries}, proxy retries {retries}");
    assert_eq!(
        tries as f64,
        3.0 * REQUESTS as f64 + retries,
        "one try each, plus retries"
    );
    // One after the other, each request with retries meets the backend's 503 first and its
    // retry the 200 that follows: one retry each, no more.
    assert_eq!(retries, 2.0 * REQUESTS as f64);
}

/// `fault.abort` at 50% aborts half the requests (chi-square at 1e-6 over 10,000), which
/// never reach the backend; `fault.delay` of 200 ms at 100% delays every request by at
/// least 200 ms and none by more than 200 + 150 ms.
#[test]
fn injected_aborts_split_by_percentage_and_delays_hold_every_request() {
    if !kernel_tests_enabled("injected_aborts_split_by_percentage_and_delays_hold_every_request") {
        return;
    }
    const CONNECTIONS: usize = 4;
    const PER_CONNECTION: usize = 2_500;
    const DELAYED: usize = 40;
    const DELAY: Duration = Duration::from_millis(200);
    const SLACK: Duration = Duration::from_millis(150);
    let stage = stage();
    let backend = stage.backend("faulty-v1");
    let connections = stage.h1s(FAULTY, CONNECTIONS);
    let aborts: Vec<Reply> = stage.block_for(Duration::from_secs(90), async {
        let tasks: Vec<_> = connections
            .into_iter()
            .map(|mut h1| {
                tokio::spawn(async move {
                    let headers = [("x-fault", "abort")];
                    sequential(&mut h1, "faulty", "/abort", &headers, PER_CONNECTION).await
                })
            })
            .collect();
        let mut replies = Vec::new();
        for task in tasks {
            replies.extend(task.await.expect("client task").into_iter().map(|(r, _)| r));
        }
        replies
    });
    let aborted = aborts
        .iter()
        .filter(|r| r.status == 503 && r.body == "fault filter abort")
        .count() as u64;
    let passed = aborts
        .iter()
        .filter(|r| r.status == 200 && r.backend() == "faulty-v1")
        .count() as u64;
    assert_eq!(
        aborted + passed,
        aborts.len() as u64,
        "{:?}",
        by_status(&aborts)
    );
    let (chi, p) = stats::chi_square(&[aborted, passed], &[1.0, 1.0]).expect("chi-square");
    println!("abort 50%: {aborted} aborted, {passed} passed; chi-square {chi:.3}, p = {p:.3}");
    stats::assert_split(&[aborted, passed], &[1.0, 1.0]).expect("half aborted");
    // An aborted request is answered by the proxy: only the others reached the backend.
    assert_eq!(backend.seen().len() as u64, passed);

    // Delays: 8 connections at once, 5 requests each.
    let connections = stage.h1s(FAULTY, 8);
    let delayed: Vec<(Reply, Duration)> = stage.block(async {
        let tasks: Vec<_> = connections
            .into_iter()
            .map(|mut h1| {
                tokio::spawn(async move {
                    let headers = [("x-fault", "delay")];
                    sequential(&mut h1, "faulty", "/delay", &headers, DELAYED / 8).await
                })
            })
            .collect();
        let mut replies = Vec::new();
        for task in tasks {
            replies.extend(task.await.expect("client task"));
        }
        replies
    });
    assert_eq!(delayed.len(), DELAYED);
    for (reply, _) in &delayed {
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.backend(), "faulty-v1");
    }
    let times: Vec<Duration> = delayed.iter().map(|(_, t)| *t).collect();
    let (min, max) = (
        times.iter().min().copied().unwrap_or_default(),
        times.iter().max().copied().unwrap_or_default(),
    );
    let p99 = stats::percentile(&times, 99.0).unwrap_or_default();
    println!(
        "delay 200 ms: min {:.1} ms, p99 {:.1} ms, max {:.1} ms (bound {:.0} ms)",
        millis(min),
        millis(p99),
        millis(max),
        millis(DELAY + SLACK)
    );
    assert!(min >= DELAY, "a request was delayed less: {min:?}");
    assert!(max <= DELAY + SLACK, "a request was delayed more: {max:?}");
}

/// `timeout: 100ms` on an upstream that answers after 1 s: a 504 after about 100 ms
/// (100..=400 ms), and the upstream request is cancelled: the backend sees its request
/// dropped, long before it would have answered.
#[test]
fn a_route_timeout_answers_504_and_cancels_the_upstream_request() {
    if !kernel_tests_enabled("a_route_timeout_answers_504_and_cancels_the_upstream_request") {
        return;
    }
    const REQUESTS: usize = 3;
    let stage = stage();
    let backend = stage.backend("slow-v1");
    let mut h1 = stage.h1(SLOW);
    for i in 0..REQUESTS {
        let (reply, took, cancelled_after) = stage.block(async {
            let started = Instant::now();
            let reply = h1.get("slow", "/sleep/1000", &[]).await;
            let took = started.elapsed();
            // Bounded: the backend would have answered after 1 s.
            while backend.sleeps().cancelled <= i && started.elapsed() < Duration::from_secs(2) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (reply, took, started.elapsed())
        });
        println!(
            "request {i}: {} after {:.1} ms, cancelled at the backend after {:.1} ms",
            reply.status,
            millis(took),
            millis(cancelled_after)
        );
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (504, "upstream request timeout")
        );
        assert!(
            (Duration::from_millis(100)..=Duration::from_millis(400)).contains(&took),
            "504 after {took:?}"
        );
        let sleeps = backend.sleeps();
        assert_eq!(sleeps.started, i + 1, "{sleeps:?}");
        assert_eq!(
            sleeps.cancelled,
            i + 1,
            "the backend's request lives on: {sleeps:?}"
        );
        assert!(
            cancelled_after < Duration::from_millis(900),
            "cancelled only after {cancelled_after:?}"
        );
    }
    // None of them ever answered, also later.
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(backend.sleeps().completed, 0, "{:?}", backend.sleeps());
}

/// `mirror` with `mirrorPercentage: 100`: every request reaches the mirror with the
/// `-shadow` authority (before any port), and a mirror that sleeps 2 s leaves the primary's
/// latency as it was without the mirror (p99 within 2x + 20 ms).
#[test]
fn mirroring_copies_every_request_without_slowing_the_primary() {
    if !kernel_tests_enabled("mirroring_copies_every_request_without_slowing_the_primary") {
        return;
    }
    const REQUESTS: usize = 300;
    let stage = stage();
    let shadow = stage.backend("shadow-v1");
    let primary = stage.backend("web-v1");
    let mut h1 = stage.h1(WEB);
    // The path sleeps 2 s on the mirror's backend only; the primary answers at once.
    let path = "/sleep-on/shadow-v1/2000";
    let (baseline, mirrored) = stage.block(async {
        // Warm up the connection to the primary.
        sequential(&mut h1, "web", path, &[], 10).await;
        let baseline = sequential(&mut h1, "web", path, &[], REQUESTS).await;
        let mut mirrored = Vec::with_capacity(REQUESTS);
        for i in 0..REQUESTS {
            // Half with a port in the authority, which the shadow host keeps after `-shadow`.
            let host = if i % 2 == 0 { "web" } else { "web:80" };
            let sent = sequential(&mut h1, host, path, &[("x-mirror", "yes")], 1).await;
            mirrored.extend(sent);
        }
        (baseline, mirrored)
    });
    for (reply, _) in baseline.iter().chain(&mirrored) {
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.backend(), "web-v1");
    }
    let p99 = |replies: &[(Reply, Duration)]| {
        let times: Vec<Duration> = replies.iter().map(|(_, t)| *t).collect();
        stats::percentile(&times, 99.0).unwrap_or_default()
    };
    let (without, with) = (p99(&baseline), p99(&mirrored));
    println!(
        "primary p99: {:.2} ms without the mirror, {:.2} ms with it sleeping 2 s (bound {:.2} ms)",
        millis(without),
        millis(with),
        millis(2 * without + Duration::from_millis(20))
    );
    assert!(
        with <= 2 * without + Duration::from_millis(20),
        "the mirror slowed the primary: p99 {with:?} against {without:?}"
    );
    // Every copy arrives (they were sent at once, then sleep 2 s at the mirror).
    let deadline = Instant::now() + Duration::from_secs(10);
    while shadow.sleeps().completed < REQUESTS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut hosts: BTreeMap<String, usize> = BTreeMap::new();
    for seen in shadow.seen() {
        *hosts.entry(seen).or_default() += 1;
    }
    println!("at the mirror: {hosts:?}, sleeps {:?}", shadow.sleeps());
    assert_eq!(
        hosts,
        BTreeMap::from([
            (format!("GET web-shadow {path}"), REQUESTS / 2),
            (format!("GET web-shadow:80 {path}"), REQUESTS / 2),
        ])
    );
    assert_eq!(shadow.sleeps().completed, REQUESTS, "{:?}", shadow.sleeps());
    // The primary never slept on the mirror's path, and saw every request once.
    assert_eq!(primary.seen().len(), 10 + 2 * REQUESTS);
    assert_eq!(primary.sleeps().started, 0);
}

/// Bookinfo's services with one of Istio's ratings fault-injection VirtualServices.
fn bookinfo(ratings_vs: &str) -> L7Stage {
    let files = [
        (
            "services.yaml",
            include_str!("../../examples/bookinfo/services.yaml").to_string(),
        ),
        ("ratings.yaml", ratings_vs.to_string()),
    ];
    L7Stage::new(
        &[
            ("ratings-v1", "127.0.12.1:9080"),
            ("ratings-v2", "127.0.12.2:9080"),
        ],
        &files,
    )
}

/// Istio's virtual-service-ratings-test-delay.yaml: jason's ratings requests are delayed
/// 7 s, another user's, sent while jason's waits, are not.
#[test]
fn bookinfo_jasons_ratings_are_delayed_seven_seconds_and_nobody_elses() {
    if !kernel_tests_enabled("bookinfo_jasons_ratings_are_delayed_seven_seconds_and_nobody_elses") {
        return;
    }
    let stage = bookinfo(include_str!(
        "../../examples/bookinfo/ratings-jason-delay.yaml"
    ));
    let mut connections = stage.h1s(RATINGS, 2);
    let (mut jason_h1, mut other_h1) = (connections.remove(0), connections.remove(0));
    let ((jason, jason_took), others) = stage.block(async {
        let jason = tokio::spawn(async move {
            let started = Instant::now();
            let reply = jason_h1
                .get("ratings:9080", "/ratings/0", &[("end-user", "jason")])
                .await;
            (reply, started.elapsed())
        });
        // While jason waits: another user, and no user.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut others = Vec::new();
        for user in [Some("alice"), None, Some("alice")] {
            let headers: Vec<(&str, &str)> = user.map(|u| ("end-user", u)).into_iter().collect();
            let started = Instant::now();
            let reply = other_h1.get("ratings:9080", "/ratings/0", &headers).await;
            others.push((reply, started.elapsed()));
        }
        assert!(!jason.is_finished(), "jason's request came back early");
        (jason.await.expect("jason's request"), others)
    });
    println!(
        "jason: {} after {:.0} ms; others: {:?}",
        jason.status,
        millis(jason_took),
        others
            .iter()
            .map(|(r, t)| format!("{} after {:.1} ms", r.status, millis(*t)))
            .collect::<Vec<_>>()
    );
    assert_eq!(jason.status, 200, "{jason:?}");
    assert_eq!(jason.backend(), "ratings-v1");
    assert!(
        (Duration::from_secs(7)..Duration::from_millis(8_500)).contains(&jason_took),
        "jason's request took {jason_took:?}"
    );
    for (reply, took) in &others {
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.backend(), "ratings-v1");
        assert!(*took < Duration::from_secs(1), "took {took:?}");
    }
}

/// Istio's virtual-service-ratings-test-abort.yaml: jason's ratings requests are answered
/// 500 by the proxy (never reaching ratings), everyone else's by ratings-v1.
#[test]
fn bookinfo_jasons_ratings_are_aborted_with_500_and_nobody_elses() {
    if !kernel_tests_enabled("bookinfo_jasons_ratings_are_aborted_with_500_and_nobody_elses") {
        return;
    }
    let stage = bookinfo(include_str!(
        "../../examples/bookinfo/ratings-jason-abort.yaml"
    ));
    let mut h1 = stage.h1(RATINGS);
    let replies = stage.block(async {
        let mut replies = Vec::new();
        for i in 0..40 {
            let jason = i % 2 == 0;
            let (headers, path): (&[(&str, &str)], _) = if jason {
                (&[("end-user", "jason")], "/ratings/jason")
            } else {
                (&[("end-user", "alice")], "/ratings/alice")
            };
            replies.push((jason, h1.get("ratings:9080", path, headers).await));
        }
        replies
    });
    for (jason, reply) in &replies {
        if *jason {
            assert_eq!(
                (reply.status.as_u16(), reply.body.as_str()),
                (500, "fault filter abort")
            );
        } else {
            assert_eq!(reply.status, 200, "{reply:?}");
            assert_eq!(reply.backend(), "ratings-v1");
        }
    }
    let seen = stage.backend("ratings-v1").seen();
    assert_eq!(
        seen,
        vec!["GET ratings:9080 /ratings/alice".to_string(); 20],
        "only the others reach ratings"
    );
}
