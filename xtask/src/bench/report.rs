//! The bench report as Markdown: the targets first, then every table, the notes and the plots.
//!
//! Every ratio is taken between medians of the same run. Missing rows give "not measured" (or
//! "-" in a table cell), never a panic, and no NaN or infinity is ever printed.
use std::fmt::Write as _;

use super::results::{ConnectRun, KernelCost, LoadCost, Results, Stat, Throughput, Variant};

/// The service count the scale targets are named for when nothing larger than 1 was measured.
const NOMINAL_LARGE_SERVICES: usize = 30_000;
/// The VirtualService count of the load target.
const LOAD_TARGET_VIRTUAL_SERVICES: usize = 10_000;
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
    kernel_table(&mut out, results);
    notes(&mut out, results);
    out.push_str(
        "## Plots\n\n\
         - [connect.svg](connect.svg): short connections, rate relative to direct, by service \
         count.\n\
         - [update.svg](update.svg): one-service change, milliseconds (log scale), by service \
         count.\n",
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
        kernel_target(results),
        load_target(results),
        throughput_target(results),
    ]
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

/// vsteer's connections/s over `baseline`'s at `services`, against `min_ratio`.
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
    let ratio = connect_ratio(results, services, Variant::Vsteer, baseline);
    let verdict = Verdict::of(ratio, |r| r >= min_ratio);
    let measured = if verdict == Verdict::NotMeasured {
        "-".into()
    } else {
        format!("{} {}", fmt_ratio(ratio), baseline.label())
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
        "{} ({} ms vs {} ms); end to end (vsteer reload, {} ms): {}",
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
    // A smaller count that loads in time says nothing about 10,000, and a larger count that
    // takes too long says nothing either: only the conclusive cases get a verdict.
    let verdict = match Verdict::of(ms, |ms| ms < 1000.0) {
        Verdict::Meets if count >= LOAD_TARGET_VIRTUAL_SERVICES => Verdict::Meets,
        Verdict::FallsShort if count <= LOAD_TARGET_VIRTUAL_SERVICES => Verdict::FallsShort,
        _ => Verdict::NotMeasured,
    };
    let which = if count == LOAD_TARGET_VIRTUAL_SERVICES {
        String::new()
    } else {
        format!(
            " (measured at {} VirtualServices, the largest count run)",
            fmt_thousands(count as f64)
        )
    };
    let measured = format!(
        "{} s{which}; peak RSS {} MiB",
        fmt_fixed(ms / 1000.0, 2),
        fmt_mib(load.peak_rss_kib)
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
    let ratio = throughput_ratio(results, Variant::Vsteer);
    let verdict = Verdict::of(ratio, |r| (r - 1.0).abs() <= 0.02);
    let measured = if verdict == Verdict::NotMeasured {
        "-".into()
    } else {
        format!("{} direct", fmt_ratio(ratio))
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
        "- Method: each number is min / median / max over {repeats} repetitions; ratios use \
         medians, measured in the same run.\n"
    );
}

fn connect_table(out: &mut String, results: &Results) {
    out.push_str("## Connect path\n\n");
    out.push_str(
        "Short connections (connect, small request/response, close) from one pinned client core \
         to a VIP with 4 backends. Latency ratios are variant / direct: above 1 is slower.\n\n",
    );
    if results.connect.is_empty() {
        out.push_str("Not measured.\n\n");
        return;
    }
    out.push_str(
        "| Services | Variant | conns/s | min–max | vs direct | p50 µs | p99 µs | p50 vs direct \
         | p99 vs direct |\n\
         | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut runs: Vec<&ConnectRun> = results.connect.iter().collect();
    runs.sort_by_key(|run| (run.services, run.variant));
    for run in runs {
        let direct = connect_run(results, run.services, Variant::Direct);
        let vs =
            |f: fn(&ConnectRun) -> f64| direct.map_or(f64::NAN, |direct| ratio(f(run), f(direct)));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            fmt_thousands(run.services as f64),
            run.variant.label(),
            fmt_thousands(run.conns_per_sec.median),
            fmt_range(&run.conns_per_sec, fmt_thousands),
            fmt_ratio(vs(|r| r.conns_per_sec.median)),
            fmt_fixed(run.p50_us.median, 1),
            fmt_fixed(run.p99_us.median, 1),
            fmt_ratio(vs(|r| r.p50_us.median)),
            fmt_ratio(vs(|r| r.p99_us.median)),
        );
    }
    out.push('\n');
}

fn throughput_table(out: &mut String, results: &Results) {
    out.push_str("## Throughput\n\nBytes per second on one long connection.\n\n");
    if results.throughput.is_empty() {
        out.push_str("Not measured.\n\n");
        return;
    }
    out.push_str("| Variant | bytes/s | min–max | vs direct |\n| --- | ---: | ---: | ---: |\n");
    let mut runs: Vec<&Throughput> = results.throughput.iter().collect();
    runs.sort_by_key(|run| run.variant);
    for run in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            run.variant.label(),
            fmt_bytes_per_sec(run.bytes_per_sec.median),
            fmt_range(&run.bytes_per_sec, fmt_bytes_per_sec),
            fmt_ratio(throughput_ratio(results, run.variant)),
        );
    }
    out.push('\n');
}

fn update_table(out: &mut String, results: &Results) {
    out.push_str(
        "## Update cost\n\nA one-service weight change, in ms: median (min–max). vsteer apply \
         writes the diff into the kernel maps; vsteer reload is end to end, from the config file \
         written to the change applied; iptables-restore loads the whole ruleset.\n\n",
    );
    if results.update.is_empty() {
        out.push_str("Not measured.\n\n");
        return;
    }
    out.push_str(
        "| Services | vsteer apply | vsteer reload | iptables-restore | iptables / apply \
         | iptables / reload |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut updates: Vec<_> = results.update.iter().collect();
    updates.sort_by_key(|update| update.services);
    for update in updates {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            fmt_thousands(update.services as f64),
            fmt_stat_ms(&update.vsteer_apply_ms),
            fmt_stat_ms(&update.vsteer_reload_ms),
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

/// The connect run of `variant` at `services`, if measured.
fn connect_run(results: &Results, services: usize, variant: Variant) -> Option<&ConnectRun> {
    results
        .connect
        .iter()
        .find(|run| run.services == services && run.variant == variant)
}

/// Median connections/s of `variant` over `baseline`'s at `services`; NaN when either is
/// missing.
fn connect_ratio(results: &Results, services: usize, variant: Variant, baseline: Variant) -> f64 {
    match (
        connect_run(results, services, variant),
        connect_run(results, services, baseline),
    ) {
        (Some(run), Some(base)) => ratio(run.conns_per_sec.median, base.conns_per_sec.median),
        _ => f64::NAN,
    }
}

/// Median bytes/s of `variant` over direct's; NaN when either is missing.
fn throughput_ratio(results: &Results, variant: Variant) -> f64 {
    let find = |v: Variant| results.throughput.iter().find(|run| run.variant == v);
    match (find(variant), find(Variant::Direct)) {
        (Some(run), Some(direct)) => ratio(run.bytes_per_sec.median, direct.bytes_per_sec.median),
        _ => f64::NAN,
    }
}

/// `a / b`, NaN unless both are finite and `b` is positive.
fn ratio(a: f64, b: f64) -> f64 {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        a / b
    } else {
        f64::NAN
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
    use super::super::results::{Machine, UpdateCost};
    use super::*;

    fn stat(min: f64, median: f64, max: f64) -> Stat {
        Stat { min, median, max }
    }

    fn connect(services: usize, variant: Variant, median: f64, p50: f64) -> ConnectRun {
        ConnectRun {
            services,
            variant,
            // Wide ranges: a ratio of mins or maxes would differ from the ratio of medians.
            conns_per_sec: stat(median * 0.5, median, median * 1.7),
            p50_us: stat(p50 * 0.9, p50, p50 * 1.1),
            p99_us: stat(p50 * 2.0, p50 * 3.0, p50 * 4.0),
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
                repeats: 5,
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
                    iptables_restore_ms: stat(400.0, 500.0, 700.0),
                },
                UpdateCost {
                    services: 30_000,
                    vsteer_apply_ms: stat(1.0, 2.0, 100.0),
                    vsteer_reload_ms: stat(40.0, 50.0, 60.0),
                    iptables_restore_ms: stat(16_000.0, 17_000.0, 18_000.0),
                },
            ],
            load: vec![LoadCost {
                virtual_services: 10_000,
                load_ms: stat(400.0, 420.0, 500.0),
                peak_rss_kib: 46_387,
            }],
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
        assert_eq!(direct_1[1], "0.99x direct");
        assert_eq!(direct_1[2], "meets");
        let direct_large = row(
            &table,
            "vsteer ≥ 0.98x direct connections/s at 30,000 services",
        );
        assert_eq!(direct_large[1], "0.97x direct");
        assert_eq!(direct_large[2], "falls short");
        // 9,900 / 8,000 medians.
        let iptables_1 = row(
            &table,
            "vsteer ≥ 1.15x iptables DNAT connections/s at 1 service",
        );
        assert_eq!(iptables_1[1], "1.24x iptables DNAT");
        assert_eq!(iptables_1[2], "meets");
        // 9,700 / 2,000 medians.
        let iptables_large = row(
            &table,
            "vsteer ≥ 3.50x iptables DNAT connections/s at 30,000 services",
        );
        assert_eq!(iptables_large[1], "4.85x iptables DNAT");
        assert_eq!(iptables_large[2], "meets");
        let update = row(&table, "one-service change at 30,000 services");
        assert!(
            update[1].starts_with("8,500x (17,000 ms vs 2.00 ms)"),
            "{update:?}"
        );
        assert!(update[1].contains("end to end (vsteer reload, 50.0 ms): 340x"));
        assert_eq!(update[2], "meets");
        let kernel = row(&table, "vsteer_connect4 ≤ 150 ns");
        assert_eq!(kernel[1], "120.0 ns (1,234,567 calls)");
        assert_eq!(kernel[2], "meets");
        let load = row(&table, "10,000 VirtualServices");
        assert_eq!(load[1], "0.42 s; peak RSS 45.3 MiB");
        assert_eq!(load[2], "meets");
        let throughput = row(&table, "long-connection throughput");
        assert_eq!(throughput[1], "-");
        assert_eq!(throughput[2], "not measured");
    }

    #[test]
    fn throughput_meets_within_two_percent_of_direct() {
        let mut results = sample();
        results.throughput = vec![
            Throughput {
                variant: Variant::Direct,
                bytes_per_sec: stat(1.0e9, 4.0e9, 5.0e9),
            },
            Throughput {
                variant: Variant::Vsteer,
                bytes_per_sec: stat(3.0e9, 3.94e9, 6.0e9),
            },
        ];
        let table = ratio_table(&results);
        assert_eq!(row(&table, "long-connection throughput")[2], "meets");
        results.throughput[1].bytes_per_sec.median = 3.87e9;
        let table = ratio_table(&results);
        assert_eq!(row(&table, "long-connection throughput")[2], "falls short");
    }

    #[test]
    fn missing_data_is_not_measured_and_never_nan() {
        let mut results = sample();
        results.connect.clear();
        results.update.clear();
        results.load.clear();
        results.kernel.clear();
        results.notes.clear();
        let report = markdown(&results);
        let table = ratio_table(&results);
        assert_eq!(table.matches("| not measured |").count(), 8, "{table}");
        assert!(table.contains("at 30,000 services"), "{table}");
        assert_no_nan(&report);

        // Zero and NaN medians: no division by zero, no NaN printed.
        let mut results = sample();
        results.connect[0].conns_per_sec = stat(f64::NAN, f64::NAN, f64::NAN);
        results.connect[4].conns_per_sec = stat(0.0, 0.0, 0.0);
        results.connect[6].conns_per_sec = stat(0.0, 0.0, 0.0);
        results.update[1].vsteer_apply_ms = stat(0.0, 0.0, 0.0);
        results.update[1].vsteer_reload_ms = Stat::of(&[]);
        results.load[0].load_ms = Stat::of(&[]);
        results.kernel[0].ns_per_call = f64::INFINITY;
        let report = markdown(&results);
        assert_no_nan(&report);
        let table = ratio_table(&results);
        for target in [
            "vsteer ≥ 0.98x direct connections/s at 1 service",
            "vsteer ≥ 0.98x direct connections/s at 30,000",
            "vsteer ≥ 3.50x iptables DNAT connections/s at 30,000",
            "one-service change",
            "vsteer_connect4",
            "10,000 VirtualServices",
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
        results.load[0].load_ms = stat(1200.0, 1500.0, 1600.0);
        let load = row(&ratio_table(&results), "10,000 VirtualServices");
        assert_eq!(load[2], "falls short");
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
    fn report_has_every_section_with_ratios_of_medians() {
        let report = markdown(&sample());
        assert_no_nan(&report);
        for needle in [
            "# vsteer benchmark",
            "8 cores, Test CPU @ 3.0GHz, kernel 6.8.0-test, 2026-05-01 12:00 UTC",
            "`cargo xtask bench --quick`",
            "each number is min / median / max over 5 repetitions; ratios use medians, measured \
             in the same run",
            "## Targets",
            "## Connect path",
            "## Throughput",
            "## Update cost",
            "## Load cost",
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
        // vsteer at 1 service: 9,900 / 10,000 (medians; min 4,950 and max 16,830 would differ).
        assert!(
            report.contains(
                "| 1 | vsteer | 9,900 | 4,950–16,830 | 0.99x | 51.0 | 153.0 | 1.02x | 1.02x |"
            ),
            "{report}"
        );
        assert!(report.contains("| 30,000 | iptables DNAT | 2,000 | 1,000–3,400 | 0.20x |"));
        // haproxy was not run at 30,000 services: no row.
        assert!(!report.contains("| 30,000 | haproxy"));
        assert!(report.contains(
            "| 30,000 | 2.00 (1.00–100.0) | 50.0 (40.0–60.0) | 17,000 (16,000–18,000) | 8,500x | 340x |"
        ));
        assert!(report.contains("| 10,000 | 420.0 | 400.0–500.0 | 45.3 |"));
        assert!(report.contains("| vsteer_connect4 | 1,234,567 | 120.0 |"));
        assert!(report.contains("| vsteer_sendmsg4 | 0 | - |"));
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
        assert_eq!(code_span("a `b` c"), "`` a `b` c ``");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }

    fn assert_no_nan(text: &str) {
        let lower = text.to_lowercase();
        for bad in ["nan", "inf"] {
            // "information" etc. would be words; the report has none, so any hit is a number.
            assert!(!lower.contains(bad), "{bad:?} printed in\n{text}");
        }
    }
}
