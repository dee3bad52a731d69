//! The bench report as Markdown: the targets first, then every table, the notes and the plots.
//!
//! Every ratio between variants is the median of per-round ratios: the variants of one
//! service count ran round by round, and round i of one is compared with round i of the other,
//! so that the machine's drift between rounds divides out. Missing rows give "not measured"
//! (or "-" in a table cell), never a panic, and no NaN or infinity is ever printed.
use std::fmt::Write as _;

use super::results::{
    CliAtScale, ConnectRun, KernelCost, KernelPathVariant, L7Load, L7Variant, LoadCost,
    MemoryAtScale, MemorySample, Results, Stat, Throughput, Variant,
};

/// The service count the scale targets are named for when nothing larger than 1 was measured.
const NOMINAL_LARGE_SERVICES: usize = 30_000;
/// The VirtualService count of the load target.
const LOAD_TARGET_VIRTUAL_SERVICES: usize = 10_000;
/// The service count the update and memory targets are named for.
const SCALE_TARGET_SERVICES: usize = 30_000;
/// One-service change end to end, settle excluded: 20x faster than the 260 ms it took before.
const UPDATE_END_TO_END_MAX_MS: f64 = 13.0;
/// The agent's peak RSS at [`LOAD_TARGET_VIRTUAL_SERVICES`].
const LOAD_PEAK_RSS_MAX_MIB: f64 = 150.0;
/// The agent's RSS at [`SCALE_TARGET_SERVICES`], ready and after the reloads.
const SCALE_RSS_MAX_MIB: f64 = 300.0;
/// `vsteer plan` and `vsteer status` at [`SCALE_TARGET_SERVICES`]: an operator's tools on a
/// big node answer within seconds and fit the agent's own memory budget.
const PLAN_MAX_MS: f64 = 5_000.0;
const PLAN_PEAK_MAX_MIB: f64 = SCALE_RSS_MAX_MIB;
const STATUS_MAX_MS: f64 = 2_000.0;
const STATUS_PEAK_MAX_MIB: f64 = 100.0;
/// The reloads the memory targets are named for.
const MEMORY_TARGET_RELOADS: usize = 10;
/// "Not growing over the reloads": after <= ready * GROWTH_FACTOR + GROWTH_SLACK_KIB, in every
/// repetition. The slack absorbs allocator noise on a small heap; the factor, on a large one.
const GROWTH_FACTOR: f64 = 1.05;
const GROWTH_SLACK_KIB: f64 = 5.0 * 1024.0;
/// vsteer's proxy against nginx: requests/s at least nginx's, p99 at most nginx's.
const L7_MIN_RPS_VS_NGINX: f64 = 1.0;
const L7_MAX_P99_VS_NGINX: f64 = 1.0;
/// A kernel-path service with the proxy running: as the connect target, against direct and
/// against an agent without the proxy.
const KERNEL_PATH_MIN_RATIO: f64 = 0.98;
/// Kubernetes mode at 30,000 Services: an EndpointSlice change to the maps written, p99, and
/// the agent's RSS while changes run.
const KUBERNETES_P99_MAX_MS: f64 = 50.0;
const KUBERNETES_RSS_MAX_MIB: f64 = 200.0;
/// The program whose in-kernel cost the per-call target is about.
const CONNECT4_PROGRAM: &str = "vsteer_connect4";

/// The whole report: written to `target/bench/report.md` and printed to the terminal.
pub fn markdown(results: &Results) -> String {
    let mut out = String::new();
    header(&mut out, results);
    out.push_str("## Targets\n\n");
    out.push_str(&ratio_table(results));
    out.push('\n');
    connect_table(&mut out, results);
    throughput_table(&mut out, results);
    update_table(&mut out, results);
    load_table(&mut out, results);
    memory_table(&mut out, results);
    cli_table(&mut out, results);
    kernel_table(&mut out, results);
    l7_section(&mut out, results);
    kubernetes_table(&mut out, results);
    notes(&mut out, results);
    out.push_str(
        "## Plots\n\n\
         - [connect.svg](connect.svg): short connections, rate relative to direct, by service \
         count.\n\
         - [update.svg](update.svg): one-service change, milliseconds (log scale), by service \
         count.\n\
         - [l7.svg](l7.svg): L7 proxies, requests/s relative to nginx, by load.\n",
    );
    out
}

/// Just the targets table (the README embeds it).
pub fn ratio_table(results: &Results) -> String {
    let mut out = String::from("| Target | Measured | Verdict |\n| --- | --- | --- |\n");
    for target in targets(results) {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            cell(&target.name),
            cell(&target.measured),
            target.verdict.word()
        );
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Meets,
    FallsShort,
    NotMeasured,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Meets => "meets",
            Verdict::FallsShort => "falls short",
            Verdict::NotMeasured => "not measured",
        }
    }

    /// `meets` when `ok`, for a finite value; `not measured` otherwise.
    fn of(value: f64, ok: impl Fn(f64) -> bool) -> Verdict {
        if !value.is_finite() {
            Verdict::NotMeasured
        } else if ok(value) {
            Verdict::Meets
        } else {
            Verdict::FallsShort
        }
    }
}

struct Target {
    name: String,
    measured: String,
    verdict: Verdict,
}

impl Target {
    fn not_measured(name: String) -> Target {
        Target {
            name,
            measured: "-".into(),
            verdict: Verdict::NotMeasured,
        }
    }
}

fn targets(results: &Results) -> Vec<Target> {
    let large = largest_connect_services(results);
    let large_label = services_label(large.unwrap_or(NOMINAL_LARGE_SERVICES));
    vec![
        connect_target(results, Variant::Direct, 0.98, Some(1), "1 service"),
        connect_target(results, Variant::Direct, 0.98, large, &large_label),
        connect_target(results, Variant::Iptables, 1.15, Some(1), "1 service"),
        connect_target(results, Variant::Iptables, 3.5, large, &large_label),
        update_target(results),
        update_end_to_end_target(results),
        kernel_target(results),
        load_target(results),
        load_rss_target(results),
        memory_rss_target(results),
        memory_growth_target(results),
        cli_target(results, Tool::Plan),
        cli_target(results, Tool::Status),
        throughput_target(results),
        l7_rps_target(results, L7Load::Http1),
        l7_p99_target(results, L7Load::Http1),
        l7_rps_target(results, L7Load::Http2),
        l7_p99_target(results, L7Load::Http2),
        kernel_path_target(results, KernelPathVariant::Direct),
        kernel_path_target(results, KernelPathVariant::VsteerNoProxy),
        kubernetes_latency_target(results),
        kubernetes_rss_target(results),
    ]
}

/// The Kubernetes run at the target's service count, or else the largest.
fn kubernetes_for_target(results: &Results) -> Option<&super::results::KubernetesSync> {
    results
        .kubernetes
        .iter()
        .find(|k| k.services == SCALE_TARGET_SERVICES)
        .or_else(|| results.kubernetes.iter().max_by_key(|k| k.services))
}

fn kubernetes_latency_target(results: &Results) -> Target {
    let name = format!(
        "Kubernetes at {}: EndpointSlice change to maps written, p99 ≤ {KUBERNETES_P99_MAX_MS:.0} ms (debounce included)",
        services_label(SCALE_TARGET_SERVICES)
    );
    let Some(run) = kubernetes_for_target(results) else {
        return Target::not_measured(name);
    };
    let verdict = at_scale(
        Verdict::of(run.latency_p99_ms, |ms| ms <= KUBERNETES_P99_MAX_MS),
        run.services,
        SCALE_TARGET_SERVICES,
    );
    let measured = format!(
        "p99 {} ms, p50 {} ms, max {} ms over {} changes; kube-proxy-style iptables-restore {} ms per change{}",
        fmt_ms(run.latency_p99_ms),
        fmt_ms(run.latency_p50_ms),
        fmt_ms(run.latency_max_ms),
        run.changes,
        fmt_ms(run.iptables_restore_ms.median),
        measured_at(run.services, SCALE_TARGET_SERVICES, "Services"),
    );
    Target {
        name,
        measured,
        verdict,
    }
}

fn kubernetes_rss_target(results: &Results) -> Target {
    let name = format!(
        "Kubernetes at {}: agent RSS ≤ {KUBERNETES_RSS_MAX_MIB:.0} MiB while 10 EndpointSlices/s change",
        services_label(SCALE_TARGET_SERVICES)
    );
    let Some(run) = kubernetes_for_target(results) else {
        return Target::not_measured(name);
    };
    let peak = run.peak_rss_kib as f64 / 1024.0;
    let verdict = at_scale(
        Verdict::of(peak, |mib| mib <= KUBERNETES_RSS_MAX_MIB),
        run.services,
        SCALE_TARGET_SERVICES,
    );
    let measured = format!(
        "{} MiB at most (ready {} MiB, VmHWM {} MiB), {} cores{}",
        fmt_fixed(peak, 1),
        fmt_fixed(run.ready_rss_kib as f64 / 1024.0, 1),
        fmt_fixed(run.hwm_kib as f64 / 1024.0, 1),
        fmt_fixed(run.cpu_cores, 3),
        measured_at(run.services, SCALE_TARGET_SERVICES, "Services"),
    );
    Target {
        name,
        measured,
        verdict,
    }
}

fn kubernetes_table(out: &mut String, results: &Results) {
    out.push_str(
        "## Kubernetes mode\n\nThe test API server holds N Services, each with an EndpointSlice \
         of two ready endpoints and their two pods; the agent (`--source kubernetes`) lists \
         them, then one EndpointSlice changes every 100 ms (one endpoint's `ready` flips). \
         Latency is from the change at the API server to the agent's \"config applied\" line \
         (by the line's own timestamp): watch delivery, the 10 ms debounce, recompile and the \
         diffed map write. kube-proxy's iptables mode answers such a change with an \
         `iptables-restore` of its ruleset, timed in the same run (a full restore, as before \
         kube-proxy 1.28; its minimum sync period, 1 s by default, not counted).\n\n",
    );
    if results.kubernetes.is_empty() {
        out.push_str("Not measured.\n\n");
        return;
    }
    out.push_str(
        "| Services | Pods | Ready | Changes | p50 | p99 | max | iptables-restore | RSS ready \
         | RSS peak | VmHWM | CPU |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for run in &results.kubernetes {
        let _ = writeln!(
            out,
            "| {} | {} | {} ms | {} at {}/s | {} ms | {} ms | {} ms | {} | {} | {} | {} | {} cores |",
            fmt_thousands(run.services as f64),
            fmt_thousands(run.pods as f64),
            fmt_ms(run.ready_ms),
            run.changes,
            fmt_fixed(run.changes_per_sec, 1),
            fmt_ms(run.latency_p50_ms),
            fmt_ms(run.latency_p99_ms),
            fmt_ms(run.latency_max_ms),
            fmt_stat_ms(&run.iptables_restore_ms),
            fmt_mib(run.ready_rss_kib),
            fmt_mib(run.peak_rss_kib),
            fmt_mib(run.hwm_kib),
            fmt_fixed(run.cpu_cores, 3),
        );
    }
    out.push('\n');
}

/// vsteer's proxy's requests/s over nginx's under `load`, per round.
fn l7_rps_target(results: &Results, load: L7Load) -> Target {
    let name = format!(
        "L7 ({}): vsteer ≥ {L7_MIN_RPS_VS_NGINX:.2}x nginx requests/s",
        load.label()
    );
    let Some(run) = results.l7_run(load, L7Variant::Vsteer) else {
        return Target::not_measured(name);
    };
    let ratios = run.vs_nginx.conns_per_sec;
    let verdict = Verdict::of(ratios.median, |r| r >= L7_MIN_RPS_VS_NGINX);
    if verdict == Verdict::NotMeasured {
        return Target::not_measured(name);
    }
    let nginx = results
        .l7_run(load, L7Variant::Nginx)
        .map_or(f64::NAN, |n| n.requests_per_sec.median);
    Target {
        name,
        measured: format!(
            "{} nginx (per round {}; {} vs {} req/s)",
            fmt_ratio(ratios.median),
            fmt_range(&ratios, fmt_ratio),
            fmt_thousands(run.requests_per_sec.median),
            fmt_thousands(nginx),
        ),
        verdict,
    }
}

/// vsteer's proxy's p99 over nginx's under `load`, per round.
fn l7_p99_target(results: &Results, load: L7Load) -> Target {
    let name = format!(
        "L7 ({}): vsteer p99 ≤ {L7_MAX_P99_VS_NGINX:.2}x nginx's",
        load.label()
    );
    let Some(run) = results.l7_run(load, L7Variant::Vsteer) else {
        return Target::not_measured(name);
    };
    let ratios = run.vs_nginx.p99_us;
    let verdict = Verdict::of(ratios.median, |r| r <= L7_MAX_P99_VS_NGINX);
    if verdict == Verdict::NotMeasured {
        return Target::not_measured(name);
    }
    let nginx = results
        .l7_run(load, L7Variant::Nginx)
        .map_or(f64::NAN, |n| n.p99_us.median);
    Target {
        name,
        measured: format!(
            "{} nginx (per round {}; {} vs {} µs)",
            fmt_ratio(ratios.median),
            fmt_range(&ratios, fmt_ratio),
            fmt_fixed(run.p99_us.median, 0),
            fmt_fixed(nginx, 0),
        ),
        verdict,
    }
}

/// The kernel-path service's connections/s through the agent with its proxy running, over
/// `baseline`'s (direct, or the `--no-proxy` agent), per round.
fn kernel_path_target(results: &Results, baseline: KernelPathVariant) -> Target {
    let name = format!(
        "kernel-path service with the proxy running ≥ {KERNEL_PATH_MIN_RATIO:.2}x {} \
         connections/s",
        baseline.label()
    );
    let Some(run) = results.kernel_path_run(KernelPathVariant::VsteerProxy) else {
        return Target::not_measured(name);
    };
    let ratios = match baseline {
        KernelPathVariant::VsteerNoProxy => run.vs_no_proxy.conns_per_sec,
        _ => run.vs_direct.conns_per_sec,
    };
    let verdict = Verdict::of(ratios.median, |r| r >= KERNEL_PATH_MIN_RATIO);
    if verdict == Verdict::NotMeasured {
        return Target::not_measured(name);
    }
    Target {
        name,
        measured: format!(
            "{} {} (per round {})",
            fmt_ratio(ratios.median),
            baseline.label(),
            fmt_range(&ratios, fmt_ratio)
        ),
        verdict,
    }
}

/// A verdict on a target named for `nominal` (services, VirtualServices), measured at
/// `count`: a smaller count that meets it says nothing about `nominal`, and neither does a
/// larger one that falls short; only the conclusive cases keep their verdict.
fn at_scale(verdict: Verdict, count: usize, nominal: usize) -> Verdict {
    match verdict {
        Verdict::Meets if count >= nominal => Verdict::Meets,
        Verdict::FallsShort if count <= nominal => Verdict::FallsShort,
        _ => Verdict::NotMeasured,
    }
}

/// ` (measured at 300 services)` when `count` is not `nominal`.
fn measured_at(count: usize, nominal: usize, what: &str) -> String {
    if count == nominal {
        String::new()
    } else {
        format!(" (measured at {} {what})", fmt_thousands(count as f64))
    }
}

/// The largest service count of the connect scenario, when it is more than 1.
fn largest_connect_services(results: &Results) -> Option<usize> {
    results
        .connect
        .iter()
        .map(|run| run.services)
        .max()
        .filter(|&services| services > 1)
}

/// vsteer's connections/s over `baseline`'s at `services` (median of the per-round ratios),
/// against `min_ratio`.
fn connect_target(
    results: &Results,
    baseline: Variant,
    min_ratio: f64,
    services: Option<usize>,
    at: &str,
) -> Target {
    let name = format!(
        "vsteer ≥ {min_ratio:.2}x {} connections/s at {at}",
        baseline.label()
    );
    let Some(services) = services else {
        return Target::not_measured(name);
    };
    let ratios = connect_ratios(results, services, Variant::Vsteer, baseline);
    let verdict = Verdict::of(ratios.median, |r| r >= min_ratio);
    let measured = if verdict == Verdict::NotMeasured {
        "-".into()
    } else {
        format!(
            "{} {} (per round {})",
            fmt_ratio(ratios.median),
            baseline.label(),
            fmt_range(&ratios, fmt_ratio)
        )
    };
    Target {
        name,
        measured,
        verdict,
    }
}

fn update_target(results: &Results) -> Target {
    let largest = results.update.iter().max_by_key(|update| update.services);
    let at = services_label(largest.map_or(NOMINAL_LARGE_SERVICES, |update| update.services));
    let name = format!("one-service change at {at}: iptables-restore / vsteer apply ≥ 1,000x");
    let Some(update) = largest else {
        return Target::not_measured(name);
    };
    let apply = ratio(
        update.iptables_restore_ms.median,
        update.vsteer_apply_ms.median,
    );
    let reload = ratio(
        update.iptables_restore_ms.median,
        update.vsteer_reload_ms.median,
    );
    let verdict = Verdict::of(apply, |r| r >= 1000.0);
    let measured = format!(
        "{} ({} ms vs {} ms); end to end, settle excluded ({} ms): {}",
        fmt_ratio(apply),
        fmt_ms(update.iptables_restore_ms.median),
        fmt_ms(update.vsteer_apply_ms.median),
        fmt_ms(update.vsteer_reload_ms.median),
        fmt_ratio(reload),
    );
    Target {
        name,
        measured,
        verdict,
    }
}

fn update_end_to_end_target(results: &Results) -> Target {
    let name = format!(
        "one-service change at {} end to end (settle excluded) ≤ {UPDATE_END_TO_END_MAX_MS:.0} ms",
        services_label(SCALE_TARGET_SERVICES)
    );
    let Some(update) = update_for_target(results) else {
        return Target::not_measured(name);
    };
    let ms = update.vsteer_reload_ms.median;
    let verdict = at_scale(
        Verdict::of(ms, |ms| ms <= UPDATE_END_TO_END_MAX_MS),
        update.services,
        SCALE_TARGET_SERVICES,
    );
    if !ms.is_finite() {
        return Target::not_measured(name);
    }
    let settle = if update.vsteer_settle_ms.median.is_finite() {
        format!(
            "; settle {} ms apart",
            fmt_ms(update.vsteer_settle_ms.median)
        )
    } else {
        "; settle not logged".to_string()
    };
    let measured = format!(
        "{} ms ({}, from {}){settle}{}",
        fmt_ms(ms),
        fmt_range(&update.vsteer_reload_ms, fmt_ms),
        update.vsteer_reload_from,
        measured_at(update.services, SCALE_TARGET_SERVICES, "services"),
    );
    Target {
        name,
        measured,
        verdict,
    }
}

/// The update run at the target's service count, or else the largest.
fn update_for_target(results: &Results) -> Option<&super::results::UpdateCost> {
    results
        .update
        .iter()
        .find(|update| update.services == SCALE_TARGET_SERVICES)
        .or_else(|| results.update.iter().max_by_key(|update| update.services))
}

fn kernel_target(results: &Results) -> Target {
    let name = format!("{CONNECT4_PROGRAM} ≤ 150 ns per call (kernel statistics)");
    let Some(cost) = connect4_cost(results) else {
        return Target::not_measured(name);
    };
    let verdict = Verdict::of(cost.ns_per_call, |ns| ns <= 150.0);
    let measured = if verdict == Verdict::NotMeasured {
        "-".into()
    } else {
        format!(
            "{} ns ({} calls)",
            fmt_fixed(cost.ns_per_call, 1),
            fmt_thousands(cost.calls as f64)
        )
    };
    Target {
        name,
        measured,
        verdict,
    }
}

fn connect4_cost(results: &Results) -> Option<&KernelCost> {
    results
        .kernel
        .iter()
        .find(|cost| cost.program == CONNECT4_PROGRAM && cost.calls > 0)
}

fn load_target(results: &Results) -> Target {
    let name = format!(
        "{} VirtualServices compiled and loaded in < 1 s",
        fmt_thousands(LOAD_TARGET_VIRTUAL_SERVICES as f64)
    );
    let Some(load) = load_for_target(results) else {
        return Target::not_measured(name);
    };
    let ms = load.load_ms.median;
    let count = load.virtual_services;
    let verdict = at_scale(
        Verdict::of(ms, |ms| ms < 1000.0),
        count,
        LOAD_TARGET_VIRTUAL_SERVICES,
    );
    let measured = format!(
        "{} s{}",
        fmt_fixed(ms / 1000.0, 2),
        measured_at(count, LOAD_TARGET_VIRTUAL_SERVICES, "VirtualServices")
    );
    Target {
        name,
        measured,
        verdict,
    }
}

fn load_rss_target(results: &Results) -> Target {
    let name = format!(
        "peak RSS at {} VirtualServices ≤ {LOAD_PEAK_RSS_MAX_MIB:.0} MiB",
        fmt_thousands(LOAD_TARGET_VIRTUAL_SERVICES as f64)
    );
    let Some(load) = load_for_target(results).filter(|load| load.peak_rss_kib > 0) else {
        return Target::not_measured(name);
    };
    let mib = load.peak_rss_kib as f64 / 1024.0;
    let verdict = at_scale(
        Verdict::of(mib, |mib| mib <= LOAD_PEAK_RSS_MAX_MIB),
        load.virtual_services,
        LOAD_TARGET_VIRTUAL_SERVICES,
    );
    let measured = format!(
        "{} MiB (VmHWM when ready){}",
        fmt_mib(load.peak_rss_kib),
        measured_at(
            load.virtual_services,
            LOAD_TARGET_VIRTUAL_SERVICES,
            "VirtualServices"
        )
    );
    Target {
        name,
        measured,
        verdict,
    }
}

/// The memory run at the target's service count, or else the largest.
fn memory_for_target(results: &Results) -> Option<&MemoryAtScale> {
    results
        .memory
        .iter()
        .find(|memory| memory.services == SCALE_TARGET_SERVICES)
        .or_else(|| results.memory.iter().max_by_key(|memory| memory.services))
}

fn memory_rss_target(results: &Results) -> Target {
    let name = format!(
        "RSS at {} (SE+VS+DR each) ≤ {SCALE_RSS_MAX_MIB:.0} MiB, ready and after \
         {MEMORY_TARGET_RELOADS} reloads",
        services_label(SCALE_TARGET_SERVICES)
    );
    let Some(memory) = memory_for_target(results) else {
        return Target::not_measured(name);
    };
    let ready = memory.ready_rss_kib.median / 1024.0;
    let after = memory.after_rss_kib.median / 1024.0;
    // Both must be measured; the larger decides.
    let worst = if ready.is_finite() && after.is_finite() {
        ready.max(after)
    } else {
        f64::NAN
    };
    let verdict = at_scale(
        Verdict::of(worst, |mib| mib <= SCALE_RSS_MAX_MIB),
        memory.services,
        SCALE_TARGET_SERVICES,
    );
    if !worst.is_finite() {
        return Target::not_measured(name);
    }
    let measured = format!(
        "ready {} MiB, after {} reloads {} MiB (VmHWM {} MiB){}",
        fmt_fixed(ready, 1),
        memory.reloads,
        fmt_fixed(after, 1),
        fmt_fixed(memory.after_hwm_kib.median / 1024.0, 1),
        measured_at(memory.services, SCALE_TARGET_SERVICES, "services"),
    );
    Target {
        name,
        measured,
        verdict,
    }
}

/// The command-line tools measured at scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Plan,
    Status,
}

impl Tool {
    fn command(self) -> &'static str {
        match self {
            Tool::Plan => "vsteer plan",
            Tool::Status => "vsteer status",
        }
    }

    /// (wall time limit in ms, peak RSS limit in MiB).
    fn limits(self) -> (f64, f64) {
        match self {
            Tool::Plan => (PLAN_MAX_MS, PLAN_PEAK_MAX_MIB),
            Tool::Status => (STATUS_MAX_MS, STATUS_PEAK_MAX_MIB),
        }
    }

    /// (wall time in ms, peak RSS in KiB) of this tool in `cli`.
    fn stats(self, cli: &CliAtScale) -> (&Stat, &Stat) {
        match self {
            Tool::Plan => (&cli.plan_ms, &cli.plan_peak_kib),
            Tool::Status => (&cli.status_ms, &cli.status_peak_kib),
        }
    }
}

/// The tools' run at the target's service count, or else the largest.
fn cli_for_target(results: &Results) -> Option<&CliAtScale> {
    results
        .cli
        .iter()
        .find(|cli| cli.services == SCALE_TARGET_SERVICES)
        .or_else(|| results.cli.iter().max_by_key(|cli| cli.services))
}

/// The slowest and the largest run decide: both limits hold for every repetition.
fn cli_target(results: &Results, tool: Tool) -> Target {
    let (max_ms, max_mib) = tool.limits();
    let name = format!(
        "`{}` at {} (SE+VS+DR each, release build) ≤ {} s and peak RSS ≤ {max_mib:.0} MiB",
        tool.command(),
        services_label(SCALE_TARGET_SERVICES),
        fmt_fixed(max_ms / 1000.0, 0)
    );
    let Some(cli) = cli_for_target(results) else {
        return Target::not_measured(name);
    };
    let (wall, peak) = tool.stats(cli);
    let (ms, mib) = (wall.max, peak.max / 1024.0);
    if !ms.is_finite() || !mib.is_finite() {
        return Target::not_measured(name);
    }
    let verdict = at_scale(
        Verdict::of(ms, |ms| ms <= max_ms && mib <= max_mib),
        cli.services,
        SCALE_TARGET_SERVICES,
    );
    let measured = format!(
        "{} s, peak {} MiB at worst (median {} s, {} MiB; {} endpoints){}",
        fmt_fixed(ms / 1000.0, 2),
        fmt_fixed(mib, 1),
        fmt_fixed(wall.median / 1000.0, 2),
        fmt_fixed(peak.median / 1024.0, 1),
        fmt_thousands(cli.endpoints as f64),
        measured_at(cli.services, SCALE_TARGET_SERVICES, "services"),
    );
    Target {
        name,
        measured,
        verdict,
    }
}

/// How far one repetition's RSS grew over the reloads, KiB, and how far it may.
fn growth(run: &MemorySample) -> (f64, f64) {
    let ready = run.ready_rss_kib as f64;
    (
        run.after_rss_kib as f64 - ready,
        ready * (GROWTH_FACTOR - 1.0) + GROWTH_SLACK_KIB,
    )
}

fn memory_growth_target(results: &Results) -> Target {
    let name = format!(
        "RSS at {} not growing over {MEMORY_TARGET_RELOADS} reloads (after ≤ ready × \
         {GROWTH_FACTOR:.2} + {:.0} MiB, every repetition)",
        services_label(SCALE_TARGET_SERVICES),
        GROWTH_SLACK_KIB / 1024.0
    );
    let Some(memory) = memory_for_target(results) else {
        return Target::not_measured(name);
    };
    // The repetition closest to (or furthest past) its limit decides.
    let Some((grown, limit)) = memory
        .runs
        .iter()
        .filter(|run| run.ready_rss_kib > 0 && run.after_rss_kib > 0)
        .map(growth)
        .max_by(|a, b| (a.0 - a.1).total_cmp(&(b.0 - b.1)))
    else {
        return Target::not_measured(name);
    };
    let verdict = at_scale(
        Verdict::of(grown - limit, |excess| excess <= 0.0),
        memory.services,
        SCALE_TARGET_SERVICES,
    );
    let sign = if grown < 0.0 { "" } else { "+" };
    let measured = format!(
        "{sign}{} MiB at worst over {} of {} reloads (limit +{} MiB){}",
        fmt_fixed(grown / 1024.0, 1),
        count(memory.runs.len(), "repetition"),
        memory.reloads,
        fmt_fixed(limit / 1024.0, 1),
        measured_at(memory.services, SCALE_TARGET_SERVICES, "services"),
    );
    Target {
        name,
        measured,
        verdict,
    }
}

fn load_for_target(results: &Results) -> Option<&LoadCost> {
    results
        .load
        .iter()
        .find(|load| load.virtual_services == LOAD_TARGET_VIRTUAL_SERVICES)
        .or_else(|| results.load.iter().max_by_key(|load| load.virtual_services))
}

fn throughput_target(results: &Results) -> Target {
    let name = "long-connection throughput: vsteer = 1.00x direct (±2%)".to_string();
    let ratios = throughput_ratios(results, Variant::Vsteer);
    let verdict = Verdict::of(ratios.median, |r| (r - 1.0).abs() <= 0.02);
    let measured = if verdict == Verdict::NotMeasured {
        "-".into()
    } else {
        format!(
            "{} direct (per round {})",
            fmt_ratio(ratios.median),
            fmt_range(&ratios, fmt_ratio)
        )
    };
    Target {
        name,
        measured,
        verdict,
    }
}

fn header(out: &mut String, results: &Results) {
    let machine = &results.machine;
    let repeats = machine.repeats;
    out.push_str("# vsteer benchmark\n\n");
    let _ = writeln!(
        out,
        "- Machine: {} cores, {}, kernel {}, {}",
        machine.cores,
        one_line(&machine.cpu),
        one_line(&machine.kernel),
        one_line(&machine.date)
    );
    let _ = writeln!(out, "- Command: {}", code_span(&machine.command));
    let _ = writeln!(out, "- Repetitions: {repeats}");
    let _ = writeln!(
        out,
        "- Method: the variants of one service count are set up together and run round by \
         round, each once per round in a rotating order, after one uncounted warm-up round; \
         absolute numbers are min / median / max over {}; \"vs\" ratios are the \
         median of the per-round ratios (variant in round i over the other in round i), with \
         their min–max, so that drift of the machine between rounds divides out.\n",
        count(repeats, "round")
    );
}

fn connect_table(out: &mut String, results: &Results) {
    out.push_str("## Connect path\n\n");
    out.push_str(
        "Short connections (connect, small request/response, close) from one pinned client core \
         to a VIP with 4 backends. \"vs direct\" is the median of the per-round ratios to \
         direct, then their min–max; latency ratios are variant / direct: above 1 is \
         slower.\n\n",
    );
    if results.connect.is_empty() {
        out.push_str("Not measured.\n\n");
        return;
    }
    out.push_str(
        "| Services | Variant | conns/s | min–max | vs direct | per round | p50 µs | p99 µs \
         | p50 vs direct | p99 vs direct |\n\
         | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut runs: Vec<&ConnectRun> = results.connect.iter().collect();
    runs.sort_by_key(|run| (run.services, run.variant));
    for run in runs {
        let vs = connect_all_ratios(results, run.services, run.variant, Variant::Direct);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            fmt_thousands(run.services as f64),
            run.variant.label(),
            fmt_thousands(run.conns_per_sec.median),
            fmt_range(&run.conns_per_sec, fmt_thousands),
            fmt_ratio(vs.conns_per_sec.median),
            fmt_range(&vs.conns_per_sec, fmt_ratio),
            fmt_fixed(run.p50_us.median, 1),
            fmt_fixed(run.p99_us.median, 1),
            fmt_ratio(vs.p50_us.median),
            fmt_ratio(vs.p99_us.median),
        );
    }
    out.push('\n');
}

fn throughput_table(out: &mut String, results: &Results) {
    out.push_str(
        "## Throughput\n\nBytes per second on one long connection, direct and vsteer round by \
         round; \"vs direct\" is the median of the per-round ratios, then their min–max.\n\n",
    );
    if results.throughput.is_empty() {
        out.push_str("Not measured.\n\n");
        return;
    }
    out.push_str(
        "| Variant | bytes/s | min–max | vs direct | per round |\n\
         | --- | ---: | ---: | ---: | ---: |\n",
    );
    let mut runs: Vec<&Throughput> = results.throughput.iter().collect();
    runs.sort_by_key(|run| run.variant);
    for run in runs {
        let vs = throughput_ratios(results, run.variant);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            run.variant.label(),
            fmt_bytes_per_sec(run.bytes_per_sec.median),
            fmt_range(&run.bytes_per_sec, fmt_bytes_per_sec),
            fmt_ratio(vs.median),
            fmt_range(&vs, fmt_ratio),
        );
    }
    out.push('\n');
}

fn update_table(out: &mut String, results: &Results) {
    out.push_str(
        "## Update cost\n\nA one-service weight change, in ms: median (min–max). vsteer apply \
         writes the diff into the kernel maps; vsteer end to end is from the file event to the \
         maps written, settle excluded (the agent's total_us; read + compile + apply from an \
         agent that does not log it: the \"from\" column); the settle (first file event to \
         the debounced delivery) is apart; iptables-restore loads the whole ruleset.\n\n",
    );
    if results.update.is_empty() {
        out.push_str("Not measured.\n\n");
        return;
    }
    out.push_str(
        "| Services | vsteer apply | vsteer end to end (settle excluded) | from | settle \
         | iptables-restore | iptables / apply | iptables / end to end |\n\
         | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |\n",
    );
    let mut updates: Vec<_> = results.update.iter().collect();
    updates.sort_by_key(|update| update.services);
    for update in updates {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            fmt_thousands(update.services as f64),
            fmt_stat_ms(&update.vsteer_apply_ms),
            fmt_stat_ms(&update.vsteer_reload_ms),
            cell(&update.vsteer_reload_from),
            fmt_stat_ms(&update.vsteer_settle_ms),
            fmt_stat_ms(&update.iptables_restore_ms),
            fmt_ratio(ratio(
                update.iptables_restore_ms.median,
                update.vsteer_apply_ms.median
            )),
            fmt_ratio(ratio(
                update.iptables_restore_ms.median,
                update.vsteer_reload_ms.median
            )),
        );
    }
    out.push('\n');
}

fn load_table(out: &mut String, results: &Results) {
    out.push_str(
        "## Load cost\n\nCompiling and loading VirtualServices from YAML: from `vsteer run` \
         started to its datapath ready.\n\n",
    );
    if results.load.is_empty() {
        out.push_str("Not measured.\n\n");
        return;
    }
    out.push_str(
        "| VirtualServices | load ms | min–max | peak RSS MiB |\n| ---: | ---: | ---: | ---: |\n",
    );
    let mut loads: Vec<&LoadCost> = results.load.iter().collect();
    loads.sort_by_key(|load| load.virtual_services);
    for load in loads {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            fmt_thousands(load.virtual_services as f64),
            fmt_ms(load.load_ms.median),
            fmt_range(&load.load_ms, fmt_ms),
            fmt_mib(load.peak_rss_kib),
        );
    }
    out.push('\n');
}

fn memory_table(out: &mut String, results: &Results) {
    out.push_str(
        "## Memory\n\nThe agent's resident set (VmRSS) and its peak (VmHWM) from \
         `/proc/PID/status`, MiB, median (min–max) over fresh agents: when ready, and after \
         one-service changes. Every service has a ServiceEntry, a VirtualService and a \
         DestinationRule; kernel map memory is not the agent's and not counted.\n\n",
    );
    if results.memory.is_empty() {
        out.push_str("Not measured.\n\n");
        return;
    }
    out.push_str(
        "| Services | reloads | RSS ready | RSS after | VmHWM ready | VmHWM after \
         | largest growth |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut runs: Vec<&MemoryAtScale> = results.memory.iter().collect();
    runs.sort_by_key(|memory| memory.services);
    for memory in runs {
        let largest = memory
            .runs
            .iter()
            .map(|run| growth(run).0)
            .max_by(f64::total_cmp)
            .map_or_else(|| "-".to_string(), |kib| fmt_fixed(kib / 1024.0, 1));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            fmt_thousands(memory.services as f64),
            memory.reloads,
            fmt_stat_mib(&memory.ready_rss_kib),
            fmt_stat_mib(&memory.after_rss_kib),
            fmt_stat_mib(&memory.ready_hwm_kib),
            fmt_stat_mib(&memory.after_hwm_kib),
            largest,
        );
    }
    out.push('\n');
}

fn cli_table(out: &mut String, results: &Results) {
    out.push_str(
        "## Command-line tools at scale\n\nOn the memory scenario's config, while its agent \
         runs: `vsteer plan --config DIR` (reads and compiles every file, prints the table) \
         and `vsteer status` (reads every pinned map, prints the shares), output discarded; \
         wall time and peak RSS (`ru_maxrss` from `wait4`), median (min–max) over the \
         repetitions.\n\n",
    );
    if results.cli.is_empty() {
        out.push_str("Not measured.\n\n");
        return;
    }
    out.push_str(
        "| Services | endpoints | plan s | plan peak MiB | status s | status peak MiB |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let seconds = |stat: &Stat| {
        let s = |ms: f64| fmt_fixed(ms / 1000.0, 2);
        if stat.median.is_finite() {
            format!("{} ({})", s(stat.median), fmt_range(stat, s))
        } else {
            "-".into()
        }
    };
    for cli in &results.cli {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            fmt_thousands(cli.services as f64),
            fmt_thousands(cli.endpoints as f64),
            seconds(&cli.plan_ms),
            fmt_stat_mib(&cli.plan_peak_kib),
            seconds(&cli.status_ms),
            fmt_stat_mib(&cli.status_peak_kib),
        );
    }
    out.push('\n');
}

fn kernel_table(out: &mut String, results: &Results) {
    out.push_str(
        "## In-kernel cost\n\nThe kernel's own statistics (`kernel.bpf_stats_enabled`).\n\n",
    );
    if results.kernel.is_empty() {
        out.push_str("Not measured.\n\n");
        return;
    }
    out.push_str("| Program | calls | ns per call |\n| --- | ---: | ---: |\n");
    for cost in &results.kernel {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            cell(&cost.program),
            fmt_thousands(cost.calls as f64),
            fmt_fixed(cost.ns_per_call, 1),
        );
    }
    out.push('\n');
}

fn l7_section(out: &mut String, results: &Results) {
    let l7 = &results.l7;
    out.push_str("## L7 proxy\n\n");
    let _ = writeln!(
        out,
        "The seed's `reviews` rule (requests with `end-user: jason` to v2, all others to v3) \
         served by vsteer's proxy (the client dials the VIP; the connect hook sends it to the \
         agent's proxy), by nginx (`map $http_end_user`, upstream keepalive) and by haproxy \
         (`use_backend` on an acl on the header, `http-reuse always`); direct is the client \
         straight to the v3 backend. Same CPU budget for every proxy: nginx's one worker, \
         haproxy's one thread, the agent with `--proxy-threads 1`, each pinned to the server \
         CPU (the agent whole: its control loop idles); clients and the backends share the \
         other CPU. wrk: one thread, {} keep-alive connections, every connection alternating a \
         request with the header and one without (each request routed on its own). h2load \
         (HTTP/2 prior knowledge): two processes side by side, one sending the header and one \
         not, each {} connections of {} concurrent streams. {} s per run. Ratios are the \
         median of the per-round ratios (min–max after); \"added\" is the variant's latency \
         minus direct's in the same round, µs. The proxy's CPU is `utime + stime` of its \
         process (the agent's, for vsteer) over the run, in cores; its RSS is VmRSS in the \
         middle of the run (for vsteer the whole agent: its control plane too), \"idle\" \
         just before the run. vsteer does what Envoy does to every request (`x-request-id`, \
         `x-forwarded-for`, `x-forwarded-proto` added); the nginx and haproxy configs add \
         nothing.\n",
        l7.wrk_connections, l7.h2load_clients, l7.h2load_streams, l7.secs
    );
    if l7.runs.is_empty() {
        out.push_str("Not measured.\n\n");
        return;
    }
    out.push_str(
        "| Load | Variant | req/s | min–max | vs nginx | per round | vs direct | p50 µs \
         | p99 µs | p50 vs nginx | p99 vs nginx | added p50 µs | added p99 µs |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: \
         | ---: |\n",
    );
    let mut runs: Vec<_> = l7.runs.iter().collect();
    runs.sort_by_key(|run| (run.load, run.variant));
    for run in &runs {
        let direct = run.variant == L7Variant::Direct;
        let added = |stat: &Stat| {
            if direct {
                "-".to_string()
            } else {
                fmt_signed(stat.median)
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.load.label(),
            run.variant.label(),
            fmt_thousands(run.requests_per_sec.median),
            fmt_range(&run.requests_per_sec, fmt_thousands),
            fmt_ratio(run.vs_nginx.conns_per_sec.median),
            fmt_range(&run.vs_nginx.conns_per_sec, fmt_ratio),
            fmt_ratio(run.vs_direct.conns_per_sec.median),
            fmt_fixed(run.p50_us.median, 0),
            fmt_fixed(run.p99_us.median, 0),
            fmt_ratio(run.vs_nginx.p50_us.median),
            fmt_ratio(run.vs_nginx.p99_us.median),
            added(&run.added_p50_us),
            added(&run.added_p99_us),
        );
    }
    out.push('\n');
    out.push_str(
        "| Load | Variant | proxy CPU (cores) | CPU per 1,000 req/s (% of a core) | RSS MiB \
         | RSS idle MiB | VmHWM MiB | RSS per 1,000 req/s (KiB) | backends' CPU (cores) |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for run in &runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.load.label(),
            run.variant.label(),
            fmt_fixed(run.proxy_cores.median, 2),
            fmt_fixed(run.cpu_percent_per_krps.median, 2),
            fmt_fixed(run.proxy_rss_kib.median / 1024.0, 1),
            fmt_fixed(run.proxy_idle_rss_kib.median / 1024.0, 1),
            fmt_fixed(run.proxy_hwm_kib.median / 1024.0, 1),
            fmt_fixed(run.rss_kib_per_krps.median, 0),
            fmt_fixed(run.backend_cores.median, 2),
        );
    }
    out.push('\n');
    if let Some(direct) = results.l7_run(L7Load::Http1, L7Variant::Direct) {
        let rps = direct.requests_per_sec.median;
        let cores = direct.backend_cores.median;
        let capacity = ratio(rps, cores);
        let fastest = runs
            .iter()
            .filter(|run| run.variant != L7Variant::Direct)
            .map(|run| run.requests_per_sec.median)
            .filter(|r| r.is_finite())
            .fold(f64::NAN, f64::max);
        if capacity.is_finite() && fastest.is_finite() {
            let _ = writeln!(
                out,
                "Backends: one nginx worker (`return 200` of a fixed 11-byte body, keep-alive) \
                 serving v1, v2 and v3, pinned with the clients. Under direct's HTTP/1.1 load \
                 it used {} cores at {} req/s: about {} req/s per core of its own, {} the \
                 fastest proxy's {} req/s.\n",
                fmt_fixed(cores, 2),
                fmt_thousands(rps),
                fmt_thousands(capacity),
                fmt_ratio(capacity / fastest),
                fmt_thousands(fastest),
            );
        }
    }
    out.push_str(
        "Kernel path with the proxy running: short connections (as in the connect scenario: 4 \
         backends, 40/30/20/10) to a TCP service of the same agent while its proxy serves \
         `reviews`, against direct and against a second agent started with `--no-proxy`, round \
         by round.\n\n",
    );
    if l7.kernel_path.is_empty() {
        out.push_str("Not measured.\n\n");
        return;
    }
    out.push_str(
        "| Variant | conns/s | min–max | vs direct | per round | vs --no-proxy | per round \
         | p50 µs | p99 µs |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut kernel: Vec<_> = l7.kernel_path.iter().collect();
    kernel.sort_by_key(|run| run.variant);
    for run in kernel {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(run.variant.label()),
            fmt_thousands(run.conns_per_sec.median),
            fmt_range(&run.conns_per_sec, fmt_thousands),
            fmt_ratio(run.vs_direct.conns_per_sec.median),
            fmt_range(&run.vs_direct.conns_per_sec, fmt_ratio),
            fmt_ratio(run.vs_no_proxy.conns_per_sec.median),
            fmt_range(&run.vs_no_proxy.conns_per_sec, fmt_ratio),
            fmt_fixed(run.p50_us.median, 1),
            fmt_fixed(run.p99_us.median, 1),
        );
    }
    out.push('\n');
}

/// `+12`, `-3`: a difference in whole units; `-` when missing.
fn fmt_signed(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.round() > 0.0 {
        format!("+{}", fmt_thousands(x))
    } else {
        fmt_thousands(x)
    }
}

fn notes(out: &mut String, results: &Results) {
    out.push_str("## Notes\n\n");
    if results.notes.is_empty() {
        out.push_str("None.\n");
    }
    for note in &results.notes {
        let _ = writeln!(out, "- {}", one_line(note));
    }
    out.push('\n');
}

/// Per-round ratios (connections/s, p50, p99) of `variant` over `baseline` at `services`;
/// NaNs when either is missing.
fn connect_all_ratios(
    results: &Results,
    services: usize,
    variant: Variant,
    baseline: Variant,
) -> super::results::RoundRatios {
    let none = Stat::of(&[]);
    results
        .connect_ratios(services, variant, baseline)
        .unwrap_or(super::results::RoundRatios {
            conns_per_sec: none,
            p50_us: none,
            p99_us: none,
        })
}

/// Per-round ratios of connections/s of `variant` over `baseline` at `services`.
fn connect_ratios(results: &Results, services: usize, variant: Variant, baseline: Variant) -> Stat {
    connect_all_ratios(results, services, variant, baseline).conns_per_sec
}

/// Per-round ratios of bytes/s of `variant` over direct's; NaNs when either is missing.
fn throughput_ratios(results: &Results, variant: Variant) -> Stat {
    results
        .throughput_ratio(variant)
        .unwrap_or_else(|| Stat::of(&[]))
}

/// `a / b`, NaN unless both are finite and `b` is positive.
fn ratio(a: f64, b: f64) -> f64 {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// `1 round`, `5 rounds`.
fn count(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{} {word}s", fmt_thousands(n as f64))
    }
}

fn services_label(services: usize) -> String {
    if services == 1 {
        "1 service".into()
    } else {
        format!("{} services", fmt_thousands(services as f64))
    }
}

/// `0.98x`; ratios of 100 and more without decimals: `8,500x`.
fn fmt_ratio(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.abs() >= 100.0 {
        format!("{}x", fmt_thousands(x))
    } else {
        format!("{x:.2}x")
    }
}

/// Rounded to a whole number, with thousands separators: `10,500`.
fn fmt_thousands(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let rounded = format!("{:.0}", x.abs());
    let mut grouped = String::new();
    for (i, digit) in rounded.chars().enumerate() {
        if i > 0 && (rounded.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if x < 0.0 && rounded != "0" {
        grouped.insert(0, '-');
    }
    grouped
}

/// `decimals` places; from 10,000 on, whole numbers with thousands separators.
fn fmt_fixed(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.abs() >= 10_000.0 {
        fmt_thousands(x)
    } else {
        format!("{x:.decimals$}")
    }
}

/// Milliseconds with as many decimals as make sense: `0.123`, `2.00`, `48.5`, `17,000`.
fn fmt_ms(x: f64) -> String {
    let decimals = match x.abs() {
        x if x < 1.0 => 3,
        x if x < 10.0 => 2,
        x if x < 1000.0 => 1,
        _ => 0,
    };
    if x.is_finite() && x.abs() >= 1000.0 {
        fmt_thousands(x)
    } else {
        fmt_fixed(x, decimals)
    }
}

/// KiB as MiB: `median (min–max)`.
fn fmt_stat_mib(stat: &Stat) -> String {
    let mib = |kib: f64| fmt_fixed(kib / 1024.0, 1);
    if !stat.median.is_finite() {
        return "-".into();
    }
    format!("{} ({})", mib(stat.median), fmt_range(stat, mib))
}

fn fmt_stat_ms(stat: &Stat) -> String {
    if !stat.median.is_finite() {
        return "-".into();
    }
    format!("{} ({})", fmt_ms(stat.median), fmt_range(stat, fmt_ms))
}

/// `min–max`, or `-` when either end is missing.
fn fmt_range(stat: &Stat, fmt: fn(f64) -> String) -> String {
    if stat.min.is_finite() && stat.max.is_finite() {
        format!("{}–{}", fmt(stat.min), fmt(stat.max))
    } else {
        "-".into()
    }
}

/// `9.87 GiB/s`, `512.00 MiB/s`, ...
fn fmt_bytes_per_sec(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    const UNITS: [&str; 5] = ["B/s", "KiB/s", "MiB/s", "GiB/s", "TiB/s"];
    let mut value = x;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// KiB as MiB with one decimal; `-` for 0 (not measured).
fn fmt_mib(kib: u64) -> String {
    if kib == 0 {
        "-".into()
    } else {
        fmt_fixed(kib as f64 / 1024.0, 1)
    }
}

/// Text safe inside a table cell: one line, `|` escaped.
fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` as inline code, with enough backticks around it to hold backticks inside.
fn code_span(text: &str) -> String {
    let text = one_line(text);
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if longest > 0 { " " } else { "" };
    format!("{fence}{pad}{text}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::super::results::{Machine, RoundSample, UpdateCost};
    use super::*;

    fn stat(min: f64, median: f64, max: f64) -> Stat {
        Stat { min, median, max }
    }

    /// The machine's speed in each of the 3 rounds, the same for every variant of a round:
    /// wide, so that a ratio of mins or maxes would differ from the per-round ratios.
    const DRIFT: [f64; 3] = [0.5, 1.0, 1.7];

    fn connect(services: usize, variant: Variant, median: f64, p50: f64) -> ConnectRun {
        connect_rounds(services, variant, DRIFT.map(|d| median * d), p50)
    }

    fn connect_rounds(services: usize, variant: Variant, rates: [f64; 3], p50: f64) -> ConnectRun {
        let rounds: Vec<RoundSample> = rates
            .iter()
            .zip([0.9, 1.0, 1.1])
            .map(|(&conns_per_sec, l)| RoundSample {
                conns_per_sec,
                p50_us: p50 * l,
                p99_us: p50 * (l * 10.0 - 6.0),
            })
            .collect();
        // vs_direct is filled in by `sample` once direct is known; the report reads rounds.
        ConnectRun::from_rounds(services, variant, rounds, &[])
    }

    fn memory(services: usize, ready_mib: f64, after_mib: f64) -> MemoryAtScale {
        let kib = |mib: f64| (mib * 1024.0) as u64;
        let runs = [0.0, 1.0, 2.0]
            .map(|d| MemorySample {
                ready_rss_kib: kib(ready_mib + d),
                ready_hwm_kib: kib(ready_mib + 40.0 + d),
                after_rss_kib: kib(after_mib + d),
                after_hwm_kib: kib(after_mib + 40.0 + d),
            })
            .to_vec();
        MemoryAtScale::from_runs(services, 10, runs)
    }

    /// The tools' run: `plan` taking `plan_ms` with a peak of `plan_mib` (each repetition 1 MiB
    /// more), `status` a fixed `status_ms` and `status_mib`.
    fn cli(
        services: usize,
        plan_ms: [f64; 3],
        plan_mib: f64,
        status_ms: f64,
        status_mib: f64,
    ) -> CliAtScale {
        let kib = |mib: f64| [0.0, 1.0, 2.0].map(|d| (mib + d) * 1024.0);
        CliAtScale {
            services,
            endpoints: services * 4,
            plan_ms: Stat::of(&plan_ms),
            plan_peak_kib: Stat::of(&kib(plan_mib)),
            status_ms: Stat::of(&[status_ms; 3]),
            status_peak_kib: Stat::of(&kib(status_mib)),
        }
    }

    /// A run with every scenario measured; no throughput (to see "not measured").
    fn sample() -> Results {
        Results {
            machine: Machine {
                cores: 8,
                cpu: "Test CPU @ 3.0GHz".into(),
                kernel: "6.8.0-test".into(),
                date: "2026-05-01 12:00 UTC".into(),
                command: "cargo xtask bench --quick".into(),
                repeats: 3,
            },
            connect: vec![
                connect(1, Variant::Direct, 10_000.0, 50.0),
                connect(1, Variant::Vsteer, 9_900.0, 51.0),
                connect(1, Variant::Iptables, 8_000.0, 60.0),
                connect(1, Variant::Haproxy, 4_000.0, 120.0),
                connect(30_000, Variant::Direct, 10_000.0, 50.0),
                connect(30_000, Variant::Vsteer, 9_700.0, 52.0),
                connect(30_000, Variant::Iptables, 2_000.0, 300.0),
            ],
            throughput: vec![],
            update: vec![
                UpdateCost {
                    services: 1_000,
                    vsteer_apply_ms: stat(1.0, 1.5, 3.0),
                    vsteer_reload_ms: stat(10.0, 12.0, 20.0),
                    vsteer_reload_from: "total_us".into(),
                    vsteer_settle_ms: stat(200.0, 200.0, 201.0),
                    iptables_restore_ms: stat(400.0, 500.0, 700.0),
                },
                UpdateCost {
                    services: 30_000,
                    vsteer_apply_ms: stat(1.0, 2.0, 100.0),
                    vsteer_reload_ms: stat(40.0, 50.0, 60.0),
                    vsteer_reload_from: "total_us".into(),
                    vsteer_settle_ms: stat(200.0, 200.0, 201.0),
                    iptables_restore_ms: stat(16_000.0, 17_000.0, 18_000.0),
                },
            ],
            load: vec![LoadCost {
                virtual_services: 10_000,
                load_ms: stat(400.0, 420.0, 500.0),
                peak_rss_kib: 46_387,
            }],
            memory: vec![memory(30_000, 200.0, 205.0)],
            cli: vec![cli(30_000, [3_000.0, 3_200.0, 3_100.0], 280.0, 400.0, 60.0)],
            kernel: vec![
                KernelCost {
                    program: "vsteer_connect4".into(),
                    calls: 1_234_567,
                    ns_per_call: 120.0,
                },
                KernelCost {
                    program: "vsteer_sendmsg4".into(),
                    calls: 0,
                    ns_per_call: f64::NAN,
                },
            ],
            l7: Default::default(),
            kubernetes: Vec::new(),
            notes: vec!["haproxy skipped at 30,000 services:\nnot installed".into()],
        }
    }

    /// The targets table's row whose target starts with `prefix`, as its cells.
    fn row(table: &str, prefix: &str) -> Vec<String> {
        let line = table
            .lines()
            .find(|line| line.starts_with(&format!("| {prefix}")))
            .unwrap_or_else(|| panic!("no row {prefix:?} in\n{table}"));
        line.trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_string())
            .collect()
    }

    #[test]
    fn targets_have_the_right_verdicts() {
        let table = ratio_table(&sample());
        let direct_1 = row(&table, "vsteer ≥ 0.98x direct connections/s at 1 service");
        assert_eq!(direct_1[1], "0.99x direct (per round 0.99x–0.99x)");
        assert_eq!(direct_1[2], "meets");
        let direct_large = row(
            &table,
            "vsteer ≥ 0.98x direct connections/s at 30,000 services",
        );
        assert_eq!(direct_large[1], "0.97x direct (per round 0.97x–0.97x)");
        assert_eq!(direct_large[2], "falls short");
        // 9,900 / 8,000 in every round.
        let iptables_1 = row(
            &table,
            "vsteer ≥ 1.15x iptables DNAT connections/s at 1 service",
        );
        assert_eq!(iptables_1[1], "1.24x iptables DNAT (per round 1.24x–1.24x)");
        assert_eq!(iptables_1[2], "meets");
        let iptables_large = row(
            &table,
            "vsteer ≥ 3.50x iptables DNAT connections/s at 30,000 services",
        );
        assert!(iptables_large[1].starts_with("4.85x iptables DNAT"));
        assert_eq!(iptables_large[2], "meets");
        let update = row(
            &table,
            "one-service change at 30,000 services: iptables-restore",
        );
        assert!(
            update[1].starts_with("8,500x (17,000 ms vs 2.00 ms)"),
            "{update:?}"
        );
        assert!(update[1].contains("end to end, settle excluded (50.0 ms): 340x"));
        assert_eq!(update[2], "meets");
        let end_to_end = row(
            &table,
            "one-service change at 30,000 services end to end (settle excluded) ≤ 13 ms",
        );
        assert_eq!(
            end_to_end[1],
            "50.0 ms (40.0–60.0, from total_us); settle 200.0 ms apart"
        );
        assert_eq!(end_to_end[2], "falls short");
        let kernel = row(&table, "vsteer_connect4 ≤ 150 ns");
        assert_eq!(kernel[1], "120.0 ns (1,234,567 calls)");
        assert_eq!(kernel[2], "meets");
        let load = row(&table, "10,000 VirtualServices");
        assert_eq!(load[1], "0.42 s");
        assert_eq!(load[2], "meets");
        let load_rss = row(&table, "peak RSS at 10,000 VirtualServices ≤ 150 MiB");
        assert_eq!(load_rss[1], "45.3 MiB (VmHWM when ready)");
        assert_eq!(load_rss[2], "meets");
        let rss = row(
            &table,
            "RSS at 30,000 services (SE+VS+DR each) ≤ 300 MiB, ready and after 10 reloads",
        );
        assert_eq!(
            rss[1],
            "ready 201.0 MiB, after 10 reloads 206.0 MiB (VmHWM 246.0 MiB)"
        );
        assert_eq!(rss[2], "meets");
        let growth = row(
            &table,
            "RSS at 30,000 services not growing over 10 reloads (after ≤ ready × 1.05 + 5 MiB, \
             every repetition)",
        );
        // +5 MiB in each repetition, against 5 MiB + 5% of 200-202 MiB.
        assert_eq!(
            growth[1],
            "+5.0 MiB at worst over 3 repetitions of 10 reloads (limit +15.0 MiB)"
        );
        assert_eq!(growth[2], "meets");
        let throughput = row(&table, "long-connection throughput");
        assert_eq!(throughput[1], "-");
        assert_eq!(throughput[2], "not measured");
    }

    #[test]
    fn connect_targets_use_per_round_ratios_not_ratios_of_medians() {
        let mut results = sample();
        // Rounds 1 and 2 of direct swapped: the medians stay (10,000), the pairing changes.
        results.connect[4] =
            connect_rounds(30_000, Variant::Direct, [5_000.0, 17_000.0, 10_000.0], 50.0);
        results.connect[5] =
            connect_rounds(30_000, Variant::Vsteer, [4_950.0, 16_830.0, 9_500.0], 52.0);
        // Ratio of medians 9,500 / 10,000 = 0.95 would fall short; per round 0.99, 0.99, 0.95.
        let table = ratio_table(&results);
        let direct_large = row(
            &table,
            "vsteer ≥ 0.98x direct connections/s at 30,000 services",
        );
        assert_eq!(direct_large[1], "0.99x direct (per round 0.95x–0.99x)");
        assert_eq!(direct_large[2], "meets");
        let report = markdown(&results);
        assert!(
            report.contains("| 30,000 | vsteer | 9,500 | 4,950–16,830 | 0.99x | 0.95x–0.99x |"),
            "{report}"
        );
    }

    #[test]
    fn throughput_meets_within_two_percent_of_direct() {
        let throughput = |variant, rounds: Vec<f64>, direct: &[f64]| Throughput {
            variant,
            bytes_per_sec: Stat::of(&rounds),
            vs_direct: super::super::results::per_round_ratio(&rounds, direct),
            rounds,
        };
        let direct = vec![1.0e9, 4.0e9, 5.0e9];
        let mut results = sample();
        results.throughput = vec![
            throughput(Variant::Direct, direct.clone(), &direct),
            throughput(Variant::Vsteer, vec![0.99e9, 3.94e9, 5.2e9], &direct),
        ];
        let table = ratio_table(&results);
        let row_ = row(&table, "long-connection throughput");
        assert_eq!(row_[1], "0.99x direct (per round 0.98x–1.04x)");
        assert_eq!(row_[2], "meets");
        results.throughput[1] = throughput(Variant::Vsteer, vec![0.97e9, 3.87e9, 4.8e9], &direct);
        let table = ratio_table(&results);
        assert_eq!(row(&table, "long-connection throughput")[2], "falls short");
        let report = markdown(&results);
        assert!(report.contains("| 0.97x | 0.96x–0.97x |"), "{report}");
    }

    #[test]
    fn update_end_to_end_target_at_scale_and_fallback() {
        let mut results = sample();
        results.update[1].vsteer_reload_ms = stat(9.0, 11.0, 14.0);
        results.update[1].vsteer_reload_from = "read_us+compile_us+apply_us".into();
        results.update[1].vsteer_settle_ms = Stat::of(&[]);
        let table = ratio_table(&results);
        let name = "one-service change at 30,000 services end to end (settle excluded) ≤ 13 ms";
        let end_to_end = row(&table, name);
        assert_eq!(
            end_to_end[1],
            "11.0 ms (9.00–14.0, from read_us+compile_us+apply_us); settle not logged"
        );
        assert_eq!(end_to_end[2], "meets");
        let report = markdown(&results);
        assert!(report.contains(
            "| 30,000 | 2.00 (1.00–100.0) | 11.0 (9.00–14.0) | read_us+compile_us+apply_us | - |"
        ));
        // Only a smaller count run: meeting the target there says nothing.
        results.update.remove(1);
        let end_to_end = row(&ratio_table(&results), name);
        assert!(
            end_to_end[1].ends_with("(measured at 1,000 services)"),
            "{end_to_end:?}"
        );
        assert_eq!(end_to_end[2], "not measured");
    }

    #[test]
    fn memory_targets_at_scale_and_growth_rule() {
        let rss = "RSS at 30,000 services (SE+VS+DR each)";
        let growth = "RSS at 30,000 services not growing";
        let mut results = sample();
        // 280 -> 300 MiB: within 300, but 20 MiB more than 5% + 5 MiB of 280 (19 MiB).
        results.memory = vec![memory(30_000, 280.0, 300.0)];
        let table = ratio_table(&results);
        assert_eq!(
            row(&table, rss)[2],
            "falls short",
            "302 MiB in the median run"
        );
        assert_eq!(row(&table, growth)[2], "falls short");
        // One repetition that grows is enough to fall short.
        let mut results = sample();
        results.memory[0].runs[2].after_rss_kib += 20 * 1024;
        let table = ratio_table(&results);
        assert_eq!(row(&table, rss)[2], "meets");
        assert!(row(&table, growth)[1].starts_with("+25.0 MiB at worst"));
        assert_eq!(row(&table, growth)[2], "falls short");
        // RSS shrinking over the reloads is fine.
        results.memory = vec![memory(30_000, 200.0, 190.0)];
        let table = ratio_table(&results);
        assert!(row(&table, growth)[1].starts_with("-10.0 MiB"));
        assert_eq!(row(&table, growth)[2], "meets");
        // The smoke run's 300 services: meeting says nothing about 30,000.
        results.memory = vec![memory(300, 20.0, 20.0)];
        let table = ratio_table(&results);
        assert!(row(&table, rss)[1].ends_with("(measured at 300 services)"));
        assert_eq!(row(&table, rss)[2], "not measured");
        assert_eq!(row(&table, growth)[2], "not measured");
        let report = markdown(&results);
        assert!(
            report.contains(
                "| 300 | 10 | 21.0 (20.0–22.0) | 21.0 (20.0–22.0) | 61.0 (60.0–62.0) \
                             | 61.0 (60.0–62.0) | 0.0 |"
            ),
            "{report}"
        );
    }

    /// The worst repetition decides, on time and on memory; a smaller run says nothing.
    #[test]
    fn cli_targets_take_the_worst_repetition() {
        let plan = "`vsteer plan` at 30,000 services";
        let status = "`vsteer status` at 30,000 services";
        let mut results = sample();
        let table = ratio_table(&results);
        assert_eq!(row(&table, plan)[2], "meets", "{table:?}");
        assert!(
            row(&table, plan)[1].starts_with("3.20 s, peak 282.0 MiB at worst"),
            "{:?}",
            row(&table, plan)
        );
        assert_eq!(row(&table, status)[2], "meets");
        // One slow run of plan; a status that outgrows its memory.
        results.cli = vec![cli(30_000, [3_000.0, 5_100.0, 3_000.0], 280.0, 400.0, 99.5)];
        let table = ratio_table(&results);
        assert_eq!(row(&table, plan)[2], "falls short");
        assert_eq!(row(&table, status)[2], "falls short");
        // Memory alone: 299 + 2 MiB in the last run.
        results.cli = vec![cli(30_000, [3_000.0; 3], 299.0, 400.0, 60.0)];
        assert_eq!(row(&ratio_table(&results), plan)[2], "falls short");
        results.cli = vec![cli(300, [30.0; 3], 20.0, 10.0, 5.0)];
        let table = ratio_table(&results);
        assert_eq!(row(&table, plan)[2], "not measured");
        assert!(row(&table, plan)[1].ends_with("(measured at 300 services)"));
        let report = markdown(&results);
        assert!(
            report.contains("| 300 | 1,200 | 0.03 (0.03–0.03) | 21.0 (20.0–22.0) |"),
            "{report}"
        );
        results.cli.clear();
        assert_eq!(row(&ratio_table(&results), status)[2], "not measured");
    }

    #[test]
    fn missing_data_is_not_measured_and_never_nan() {
        let mut results = sample();
        results.connect.clear();
        results.update.clear();
        results.load.clear();
        results.memory.clear();
        results.kernel.clear();
        results.notes.clear();
        let report = markdown(&results);
        let table = ratio_table(&results);
        assert_eq!(table.matches("| not measured |").count(), 20, "{table}");
        assert!(table.contains("at 30,000 services"), "{table}");
        assert_no_nan(&report);

        // Zero and NaN values: no division by zero, no NaN printed.
        let mut results = sample();
        for round in &mut results.connect[0].rounds {
            round.conns_per_sec = f64::NAN;
        }
        for i in [4, 6] {
            for round in &mut results.connect[i].rounds {
                round.conns_per_sec = 0.0;
            }
        }
        results.update[1].vsteer_apply_ms = stat(0.0, 0.0, 0.0);
        results.update[1].vsteer_reload_ms = Stat::of(&[]);
        results.update[1].vsteer_settle_ms = Stat::of(&[]);
        results.load[0].load_ms = Stat::of(&[]);
        results.load[0].peak_rss_kib = 0;
        results.memory[0] = MemoryAtScale::from_runs(30_000, 10, vec![]);
        results.kernel[0].ns_per_call = f64::INFINITY;
        let report = markdown(&results);
        assert_no_nan(&report);
        let table = ratio_table(&results);
        for target in [
            "vsteer ≥ 0.98x direct connections/s at 1 service",
            "vsteer ≥ 0.98x direct connections/s at 30,000",
            "vsteer ≥ 3.50x iptables DNAT connections/s at 30,000",
            "one-service change at 30,000 services: iptables-restore",
            "one-service change at 30,000 services end to end",
            "vsteer_connect4",
            "10,000 VirtualServices",
            "peak RSS",
            "RSS at 30,000 services (SE+VS+DR each)",
            "RSS at 30,000 services not growing",
        ] {
            assert_eq!(row(&table, target)[2], "not measured", "{target}");
        }
    }

    #[test]
    fn load_target_says_which_count_it_used() {
        let mut results = sample();
        results.load[0].virtual_services = 1_000;
        let table = ratio_table(&results);
        let load = row(&table, "10,000 VirtualServices");
        assert!(
            load[1].contains("measured at 1,000 VirtualServices"),
            "{load:?}"
        );
        assert_eq!(load[2], "not measured");
        assert_eq!(row(&table, "peak RSS")[2], "not measured");
        results.load[0].load_ms = stat(1200.0, 1500.0, 1600.0);
        results.load[0].peak_rss_kib = 200 * 1024;
        let table = ratio_table(&results);
        assert_eq!(row(&table, "10,000 VirtualServices")[2], "falls short");
        assert_eq!(row(&table, "peak RSS")[2], "falls short");
    }

    #[test]
    fn largest_service_count_labels_the_scale_targets() {
        let mut results = sample();
        for run in &mut results.connect {
            if run.services == 30_000 {
                run.services = 10_000;
            }
        }
        let table = ratio_table(&results);
        row(
            &table,
            "vsteer ≥ 0.98x direct connections/s at 10,000 services",
        );
        row(
            &table,
            "vsteer ≥ 3.50x iptables DNAT connections/s at 10,000 services",
        );
    }

    #[test]
    fn report_has_every_section_with_per_round_ratios() {
        let report = markdown(&sample());
        assert_no_nan(&report);
        for needle in [
            "# vsteer benchmark",
            "8 cores, Test CPU @ 3.0GHz, kernel 6.8.0-test, 2026-05-01 12:00 UTC",
            "`cargo xtask bench --quick`",
            "run round by round, each once per round in a rotating order, after one uncounted \
             warm-up round; absolute numbers are min / median / max over 3 rounds; \"vs\" ratios \
             are the median of the per-round ratios",
            "## Targets",
            "## Connect path",
            "## Throughput",
            "## Update cost",
            "## Load cost",
            "## Memory",
            "## In-kernel cost",
            "## Notes",
            "- haproxy skipped at 30,000 services: not installed",
            "connect.svg",
            "update.svg",
        ] {
            assert!(report.contains(needle), "{needle:?} missing in\n{report}");
        }
        // The targets table comes first.
        assert!(report.find("## Targets") < report.find("## Connect path"));
        // vsteer at 1 service: 9,900 / 10,000 in every round (min 4,950 and max 16,830 are
        // absolute and drift).
        assert!(
            report.contains(
                "| 1 | vsteer | 9,900 | 4,950–16,830 | 0.99x | 0.99x–0.99x | 51.0 | 204.0 | 1.02x \
                 | 1.02x |"
            ),
            "{report}"
        );
        assert!(report.contains("| 30,000 | iptables DNAT | 2,000 | 1,000–3,400 | 0.20x |"));
        // haproxy was not run at 30,000 services: no row.
        assert!(!report.contains("| 30,000 | haproxy"));
        assert!(report.contains(
            "| 30,000 | 2.00 (1.00–100.0) | 50.0 (40.0–60.0) | total_us | 200.0 (200.0–201.0) \
             | 17,000 (16,000–18,000) | 8,500x | 340x |"
        ));
        assert!(report.contains("| 10,000 | 420.0 | 400.0–500.0 | 45.3 |"));
        assert!(report.contains(
            "| 30,000 | 10 | 201.0 (200.0–202.0) | 206.0 (205.0–207.0) | 241.0 (240.0–242.0) \
             | 246.0 (245.0–247.0) | 5.0 |"
        ));
        assert!(report.contains("| vsteer_connect4 | 1,234,567 | 120.0 |"));
        assert!(report.contains("| vsteer_sendmsg4 | 0 | - |"));
    }

    fn l7_results() -> super::super::results::L7Results {
        use super::super::results::{KernelPathRun, L7Results, L7Run, L7Sample};
        // Round speeds drift alike for every variant of a round.
        let rounds = |rps: f64, p99: f64| -> Vec<L7Sample> {
            DRIFT
                .map(|d| L7Sample {
                    requests_per_sec: rps * d,
                    p50_us: 32e6 / (rps * d),
                    p99_us: p99 / d,
                    requests: (rps * d * 5.0) as u64,
                    proxy_cores: 0.9,
                    proxy_rss_kib: 20 * 1024,
                    proxy_hwm_kib: 24 * 1024,
                    proxy_idle_rss_kib: 15 * 1024,
                    backend_cores: 0.25,
                })
                .to_vec()
        };
        let mut runs = Vec::new();
        for load in [L7Load::Http1, L7Load::Http2] {
            let direct = rounds(100_000.0, 400.0);
            let nginx = rounds(40_000.0, 2_000.0);
            for (variant, rps, p99) in [
                (L7Variant::Direct, 100_000.0, 400.0),
                (L7Variant::Vsteer, 44_000.0, 2_200.0),
                (L7Variant::Nginx, 40_000.0, 2_000.0),
                (L7Variant::Haproxy, 36_000.0, 1_800.0),
            ] {
                let mut mine = rounds(rps, p99);
                if variant == L7Variant::Direct {
                    for r in &mut mine {
                        r.proxy_cores = f64::NAN;
                        r.proxy_rss_kib = 0;
                        r.proxy_hwm_kib = 0;
                        r.proxy_idle_rss_kib = 0;
                    }
                }
                runs.push(L7Run::from_rounds(load, variant, mine, &direct, &nginx));
            }
        }
        let kernel = |rate: f64| -> Vec<RoundSample> {
            DRIFT
                .map(|d| RoundSample {
                    conns_per_sec: rate * d,
                    p50_us: 80.0 / d,
                    p99_us: 170.0 / d,
                })
                .to_vec()
        };
        let direct = kernel(11_000.0);
        let no_proxy = kernel(10_600.0);
        let kernel_path = [
            (KernelPathVariant::Direct, 11_000.0),
            (KernelPathVariant::VsteerProxy, 10_494.0),
            (KernelPathVariant::VsteerNoProxy, 10_600.0),
        ]
        .map(|(variant, rate)| {
            KernelPathRun::from_rounds(variant, kernel(rate), &direct, &no_proxy)
        })
        .to_vec();
        L7Results {
            runs,
            kernel_path,
            wrk_connections: 32,
            h2load_clients: 4,
            h2load_streams: 4,
            secs: 5,
        }
    }

    #[test]
    fn l7_targets_and_tables() {
        let mut results = sample();
        results.l7 = l7_results();
        let table = ratio_table(&results);
        let rps = row(&table, "L7 (wrk HTTP/1.1): vsteer ≥ 1.00x nginx requests/s");
        assert_eq!(
            rps[1],
            "1.10x nginx (per round 1.10x–1.10x; 44,000 vs 40,000 req/s)"
        );
        assert_eq!(rps[2], "meets");
        let p99 = row(&table, "L7 (h2load HTTP/2): vsteer p99 ≤ 1.00x nginx's");
        assert_eq!(
            p99[1],
            "1.10x nginx (per round 1.10x–1.10x; 2200 vs 2000 µs)"
        );
        assert_eq!(p99[2], "falls short");
        let direct = row(
            &table,
            "kernel-path service with the proxy running ≥ 0.98x direct connections/s",
        );
        assert_eq!(direct[1], "0.95x direct (per round 0.95x–0.95x)");
        assert_eq!(direct[2], "falls short");
        let no_proxy = row(
            &table,
            "kernel-path service with the proxy running ≥ 0.98x vsteer --no-proxy connections/s",
        );
        assert_eq!(
            no_proxy[1],
            "0.99x vsteer --no-proxy (per round 0.99x–0.99x)"
        );
        assert_eq!(no_proxy[2], "meets");

        let report = markdown(&results);
        assert_no_nan(&report);
        assert!(report.find("## L7 proxy") < report.find("## Notes"));
        // 44,000 in the median round; added p99 per round: 2,200 - 400 µs (/ the drift).
        assert!(
            report.contains(
                "| wrk HTTP/1.1 | vsteer | 44,000 | 22,000–74,800 | 1.10x | 1.10x–1.10x | 0.44x \
                 | 727 | 2200 | 0.91x | 1.10x | +407 | +1,800 |"
            ),
            "{report}"
        );
        assert!(report.contains("| h2load HTTP/2 | direct | 100,000 |"));
        // 0.9 cores at 44,000 req/s: 2.05% of a core per 1,000 req/s; 20 MiB / 44.
        assert!(
            report.contains(
                "| wrk HTTP/1.1 | vsteer | 0.90 | 2.05 | 20.0 | 15.0 | 24.0 | 465 | 0.25 |"
            ),
            "{report}"
        );
        assert!(report.contains("| wrk HTTP/1.1 | direct | - | - | - | - | - | - | 0.25 |"));
        assert!(report.contains(
            "used 0.25 cores at 100,000 req/s: about 400,000 req/s per core of its own, 9.09x the \
             fastest proxy's 44,000 req/s."
        ));
        assert!(report.contains(
            "| vsteer, proxy running | 10,494 | 5,247–17,840 | 0.95x | 0.95x–0.95x | 0.99x \
             | 0.99x–0.99x | 80.0 | 170.0 |"
        ));

        // Nothing measured: "not measured" rows, no table, no NaN.
        results.l7 = Default::default();
        let report = markdown(&results);
        assert_no_nan(&report);
        assert_eq!(
            row(&ratio_table(&results), "L7 (wrk HTTP/1.1)")[2],
            "not measured"
        );
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_thousands(10_500.4), "10,500");
        assert_eq!(fmt_thousands(999.6), "1,000");
        assert_eq!(fmt_thousands(1_234_567.0), "1,234,567");
        assert_eq!(fmt_thousands(-1_500.0), "-1,500");
        assert_eq!(fmt_thousands(f64::NAN), "-");
        assert_eq!(fmt_ratio(0.984), "0.98x");
        assert_eq!(fmt_ratio(8_500.0), "8,500x");
        assert_eq!(fmt_ratio(f64::INFINITY), "-");
        assert_eq!(
            fmt_bytes_per_sec(4.0 * 1024.0 * 1024.0 * 1024.0),
            "4.00 GiB/s"
        );
        assert_eq!(fmt_bytes_per_sec(512.0 * 1024.0 * 1024.0), "512.00 MiB/s");
        assert_eq!(fmt_bytes_per_sec(100.0), "100 B/s");
        assert_eq!(fmt_ms(0.1234), "0.123");
        assert_eq!(fmt_ms(17_000.0), "17,000");
        assert_eq!(fmt_mib(46_387), "45.3");
        assert_eq!(fmt_mib(0), "-");
        assert_eq!(count(1, "round"), "1 round");
        assert_eq!(count(5, "round"), "5 rounds");
        assert_eq!(code_span("a `b` c"), "`` a `b` c ``");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(fmt_signed(1_800.4), "+1,800");
        assert_eq!(fmt_signed(-3.0), "-3");
        assert_eq!(fmt_signed(0.2), "0");
        assert_eq!(fmt_signed(f64::NAN), "-");
    }

    fn assert_no_nan(text: &str) {
        let lower = text.to_lowercase();
        for bad in ["nan", "inf"] {
            // "information" etc. would be words; the report has none, so any hit is a number.
            assert!(!lower.contains(bad), "{bad:?} printed in\n{text}");
        }
    }
}
