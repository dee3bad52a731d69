//! The bench plots as SVG files: `connect.svg` (short connections, rate relative to direct:
//! median and min–max of the per-round ratios), `update.svg` (one-service change,
//! milliseconds on a log scale) and `l7.svg` (the L7 proxies' requests/s relative to nginx,
//! per load).
//!
//! SVG text needs no fonts on this machine: plotters estimates the text extent itself and the
//! viewer renders it. A scenario without data still gets its file, saying "no data", so the
//! report's links always work.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::results::{L7Load, L7Variant, Results, UpdateCost, Variant};

const SIZE: (u32, u32) = (900, 560);
const TITLE_FONT: (&str, u32) = ("sans-serif", 24);
const LABEL_FONT: (&str, u32) = ("sans-serif", 16);

/// Writes every plot into `dir` (created if missing) and returns the files written.
pub fn write_all(results: &Results, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let connect = dir.join("connect.svg");
    write_connect(results, &connect).with_context(|| format!("writing {}", connect.display()))?;
    let update = dir.join("update.svg");
    write_update(results, &update).with_context(|| format!("writing {}", update.display()))?;
    let l7 = dir.join("l7.svg");
    write_l7(results, &l7).with_context(|| format!("writing {}", l7.display()))?;
    Ok(vec![connect, update, l7])
}

/// One plotted point: median with min and max, at category `x` (shifted per series).
#[derive(Debug, Clone, Copy)]
struct Point {
    x: f64,
    min: f64,
    median: f64,
    max: f64,
}

struct Series {
    label: String,
    color: RGBColor,
    points: Vec<Point>,
}

fn color(variant: Variant) -> RGBColor {
    match variant {
        Variant::Direct => RGBColor(90, 90, 90),
        Variant::Vsteer => RGBColor(31, 119, 180),
        Variant::VsteerRange => RGBColor(23, 190, 207),
        Variant::VsteerMiss => RGBColor(148, 103, 189),
        Variant::Iptables => RGBColor(214, 39, 40),
        Variant::Haproxy => RGBColor(44, 160, 44),
    }
}

/// `1`, `1,000`, `30,000`.
fn count_label(count: usize) -> String {
    let digits = count.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Sorted, deduplicated.
fn categories(counts: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut counts: Vec<usize> = counts.collect();
    counts.sort_unstable();
    counts.dedup();
    counts
}

/// The horizontal shift of series `index` of `count`, so that error bars do not overlap.
fn shift(index: usize, count: usize) -> f64 {
    const STEP: f64 = 0.08;
    (index as f64 - (count.saturating_sub(1)) as f64 / 2.0) * STEP
}

fn finite(point: &Point) -> bool {
    point.median.is_finite() && point.min.is_finite() && point.max.is_finite()
}

/// The rate of each variant relative to direct at the same service count, round by round: the
/// median of the per-round ratios, and their min and max.
fn connect_series(results: &Results, services: &[usize]) -> Vec<Series> {
    let variants = [Variant::Vsteer, Variant::Iptables, Variant::Haproxy];
    let present: Vec<Variant> = variants
        .into_iter()
        .filter(|&variant| results.connect.iter().any(|run| run.variant == variant))
        .collect();
    let mut series = Vec::new();
    for (index, &variant) in present.iter().enumerate() {
        let points: Vec<Point> = services
            .iter()
            .enumerate()
            .filter_map(|(x, &count)| {
                let stat = results
                    .connect_ratios(count, variant, Variant::Direct)?
                    .conns_per_sec;
                Some(Point {
                    x: x as f64 + shift(index, present.len()),
                    min: stat.min,
                    median: stat.median,
                    max: stat.max,
                })
            })
            .filter(finite)
            .collect();
        if !points.is_empty() {
            series.push(Series {
                label: variant.label().to_string(),
                color: color(variant),
                points,
            });
        }
    }
    series
}

fn write_connect(results: &Results, path: &Path) -> Result<()> {
    const TITLE: &str = "Short connections: rate relative to direct";
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let services = categories(results.connect.iter().map(|run| run.services));
    let series = connect_series(results, &services);
    if series.is_empty() {
        no_data(&root, TITLE)?;
        root.present()?;
        return Ok(());
    }
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.max.max(p.median)))
        .fold(1.2_f64, f64::max);
    let y_max = if top > 1.2 { top * 1.05 } else { 1.2 };
    let mut chart = ChartBuilder::on(&root)
        .caption(TITLE, TITLE_FONT)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(Categories(services.len()), 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("services configured")
        .max_light_lines(1)
        .y_desc("connections/s relative to direct, per round (bars: min–max)")
        .axis_desc_style(LABEL_FONT)
        .label_style(LABEL_FONT)
        .x_label_formatter(&|x| category_label(&services, *x))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()?;
    let reference = [(-0.5, 1.0), (services.len().max(1) as f64 - 0.5, 1.0)];
    let direct = color(Variant::Direct);
    chart
        .draw_series(DashedLineSeries::new(
            reference,
            8,
            6,
            direct.stroke_width(2),
        ))?
        .label("direct = 1.0")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], direct.stroke_width(2)));
    draw_series(&mut chart, &series)?;
    legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    root.present()?;
    Ok(())
}

fn l7_color(variant: L7Variant) -> RGBColor {
    match variant {
        L7Variant::Direct => color(Variant::Direct),
        L7Variant::Vsteer => color(Variant::Vsteer),
        L7Variant::Nginx => RGBColor(255, 127, 14),
        L7Variant::Haproxy => color(Variant::Haproxy),
    }
}

/// Each L7 variant's requests/s relative to nginx under the same load, round by round.
fn l7_series(results: &Results, loads: &[L7Load]) -> Vec<Series> {
    let variants = [L7Variant::Direct, L7Variant::Vsteer, L7Variant::Haproxy];
    let mut series = Vec::new();
    for (index, &variant) in variants.iter().enumerate() {
        let points: Vec<Point> = loads
            .iter()
            .enumerate()
            .filter_map(|(x, &load)| {
                let stat = results.l7_run(load, variant)?.vs_nginx.conns_per_sec;
                Some(Point {
                    x: x as f64 + shift(index, variants.len()),
                    min: stat.min,
                    median: stat.median,
                    max: stat.max,
                })
            })
            .filter(finite)
            .collect();
        if !points.is_empty() {
            series.push(Series {
                label: variant.label().to_string(),
                color: l7_color(variant),
                points,
            });
        }
    }
    series
}

fn write_l7(results: &Results, path: &Path) -> Result<()> {
    const TITLE: &str = "L7 proxies: requests/s relative to nginx";
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut loads: Vec<L7Load> = results.l7.runs.iter().map(|run| run.load).collect();
    loads.sort_unstable();
    loads.dedup();
    let series = l7_series(results, &loads);
    if series.is_empty() {
        no_data(&root, TITLE)?;
        root.present()?;
        return Ok(());
    }
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.max.max(p.median)))
        .fold(1.2_f64, f64::max);
    let y_max = if top > 1.2 { top * 1.05 } else { 1.2 };
    let labels: Vec<String> = loads.iter().map(|l| l.label().to_string()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(TITLE, TITLE_FONT)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(Categories(loads.len()), 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("load")
        .max_light_lines(1)
        .y_desc("requests/s relative to nginx, per round (bars: min–max)")
        .axis_desc_style(LABEL_FONT)
        .label_style(LABEL_FONT)
        .x_label_formatter(&|x| text_label(&labels, *x))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()?;
    let reference = [(-0.5, 1.0), (loads.len().max(1) as f64 - 0.5, 1.0)];
    let nginx = l7_color(L7Variant::Nginx);
    chart
        .draw_series(DashedLineSeries::new(
            reference,
            8,
            6,
            nginx.stroke_width(2),
        ))?
        .label("nginx = 1.0")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], nginx.stroke_width(2)));
    draw_series(&mut chart, &series)?;
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    Ok(())
}

/// The label of category `x`, empty between categories.
fn text_label(labels: &[String], x: f64) -> String {
    let index = x.round();
    if (x - index).abs() > 1e-6 || index < 0.0 {
        return String::new();
    }
    labels.get(index as usize).cloned().unwrap_or_default()
}

fn update_series(results: &Results, services: &[usize]) -> Vec<Series> {
    type Pick = fn(&UpdateCost) -> super::results::Stat;
    let kinds: [(&str, RGBColor, Pick); 3] = [
        ("vsteer apply", color(Variant::Vsteer), |u| {
            u.vsteer_apply_ms
        }),
        (
            "vsteer end to end (settle excluded)",
            RGBColor(148, 103, 189),
            |u| u.vsteer_reload_ms,
        ),
        ("iptables-restore", color(Variant::Iptables), |u| {
            u.iptables_restore_ms
        }),
    ];
    let count = kinds.len();
    let mut series = Vec::new();
    for (index, (label, color, pick)) in kinds.into_iter().enumerate() {
        let points: Vec<Point> = services
            .iter()
            .enumerate()
            .filter_map(|(x, &services)| {
                let update = results.update.iter().find(|u| u.services == services)?;
                let stat = pick(update);
                Some(Point {
                    x: x as f64 + shift(index, count),
                    // A log scale shows only positive values: a minimum of 0 (below the
                    // clock's resolution) shows as the median.
                    min: if stat.min > 0.0 {
                        stat.min
                    } else {
                        stat.median
                    },
                    median: stat.median,
                    max: stat.max,
                })
            })
            .filter(|p| finite(p) && p.median > 0.0)
            .collect();
        if !points.is_empty() {
            series.push(Series {
                label: label.to_string(),
                color,
                points,
            });
        }
    }
    series
}

fn write_update(results: &Results, path: &Path) -> Result<()> {
    const TITLE: &str = "One-service change: milliseconds (log scale)";
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let services = categories(results.update.iter().map(|u| u.services));
    let series = update_series(results, &services);
    if series.is_empty() {
        no_data(&root, TITLE)?;
        root.present()?;
        return Ok(());
    }
    let values = || series.iter().flat_map(|s| s.points.iter());
    let low = values().map(|p| p.min).fold(f64::INFINITY, f64::min);
    let high = values().map(|p| p.max).fold(0.0, f64::max);
    // Whole decades around the data, so that every tick is a power of ten.
    let y_min = 10f64.powf(low.log10().floor());
    let y_max = 10f64.powf(high.log10().ceil()).max(y_min * 10.0);
    let decades = (y_min.log10().round() as i32)..=(y_max.log10().round() as i32);
    let y_keys: Vec<f64> = decades.map(|e| 10f64.powi(e)).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(TITLE, TITLE_FONT)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            Categories(services.len()),
            (y_min..y_max).log_scale().with_key_points(y_keys),
        )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("services configured")
        .y_desc("ms (log scale; bars: min–max)")
        .axis_desc_style(LABEL_FONT)
        .label_style(LABEL_FONT)
        .x_label_formatter(&|x| category_label(&services, *x))
        .y_label_formatter(&|y| ms_label(*y))
        .draw()?;
    draw_series(&mut chart, &series)?;
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    Ok(())
}

/// The service count at category `x`, empty between categories.
fn category_label(services: &[usize], x: f64) -> String {
    let index = x.round();
    if (x - index).abs() > 1e-6 || index < 0.0 {
        return String::new();
    }
    services
        .get(index as usize)
        .map(|&count| count_label(count))
        .unwrap_or_default()
}

/// `0.01`, `1`, `1,000`.
fn ms_label(ms: f64) -> String {
    if ms >= 1.0 {
        count_label(ms.round() as usize)
    } else {
        let decimals = (-ms.log10()).ceil().max(0.0) as usize;
        format!("{ms:.decimals$}")
    }
}

/// An x axis of `n` categories at 0, 1, ... n - 1, each half a category from the edges; values
/// in between place series side by side.
#[derive(Debug, Clone, Copy)]
struct Categories(usize);

impl Ranged for Categories {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let range = self.range();
        let share = (value - range.start) / (range.end - range.start);
        limit.0 + (share * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.0).map(|x| x as f64).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        -0.5..self.0.max(1) as f64 - 0.5
    }
}

type Chart<'a, 'b, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<Categories, Y>>;

/// Each series as a line through its medians, points, and min–max error bars, with a legend entry.
fn draw_series<'a, 'b: 'a, Y>(chart: &mut Chart<'a, 'b, Y>, series: &[Series]) -> Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    for s in series {
        let color = s.color;
        let medians: Vec<(f64, f64)> = s.points.iter().map(|p| (p.x, p.median)).collect();
        chart
            .draw_series(LineSeries::new(medians.clone(), color.stroke_width(2)))?
            .label(s.label.as_str())
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new([(0, 0), (20, 0)], color.stroke_width(2))
                    + Circle::new((10, 0), 4, color.filled())
            });
        chart.draw_series(s.points.iter().map(|p| {
            ErrorBar::new_vertical(p.x, p.min, p.median, p.max, color.stroke_width(1), 8)
        }))?;
        chart.draw_series(
            medians
                .into_iter()
                .map(|xy| Circle::new(xy, 4, color.filled())),
        )?;
    }
    Ok(())
}

fn legend<'a, 'b: 'a, Y>(chart: &mut Chart<'a, 'b, Y>, position: SeriesLabelPosition) -> Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font(LABEL_FONT)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn no_data(root: &DrawingArea<SVGBackend<'_>, Shift>, title: &str) -> Result<()> {
    let root = root.titled(title, TITLE_FONT)?;
    let (width, height) = root.dim_in_pixel();
    let style = TextStyle::from(LABEL_FONT.into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Center));
    root.draw(&Text::new(
        "no data",
        (width as i32 / 2, height as i32 / 2),
        style,
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::results::{
        ConnectRun, L7Results, L7Run, L7Sample, Machine, RoundSample, Stat,
    };
    use super::*;

    fn stat(median: f64) -> Stat {
        Stat {
            min: median * 0.9,
            median,
            max: median * 1.1,
        }
    }

    fn sample() -> Results {
        let mut connect = Vec::new();
        for services in [1, 1_000, 10_000, 30_000] {
            for (variant, rate) in [
                (Variant::Direct, 10_000.0),
                (Variant::Vsteer, 9_900.0),
                (Variant::Iptables, 8_000.0 - services as f64 / 5.0),
                (Variant::Haproxy, 4_000.0),
            ] {
                // haproxy only at 1 service, as when it is skipped at scale.
                if variant == Variant::Haproxy && services > 1 {
                    continue;
                }
                let rounds: Vec<RoundSample> = [0.9, 1.0, 1.1]
                    .map(|d| RoundSample {
                        conns_per_sec: rate * d,
                        p50_us: 50.0 / d,
                        p99_us: 150.0 / d,
                    })
                    .to_vec();
                connect.push(ConnectRun::from_rounds(services, variant, rounds, &[]));
            }
        }
        let update = [1_000, 10_000, 30_000]
            .into_iter()
            .map(|services| UpdateCost {
                services,
                vsteer_apply_ms: stat(1.5),
                vsteer_reload_ms: stat(40.0),
                vsteer_reload_from: "total_us".into(),
                vsteer_settle_ms: stat(200.0),
                iptables_restore_ms: stat(services as f64 * 0.6),
            })
            .collect();
        Results {
            machine: Machine {
                cores: 4,
                cpu: "Test CPU".into(),
                kernel: "6.8.0".into(),
                date: "2026-05-01".into(),
                command: "cargo xtask bench".into(),
                repeats: 3,
            },
            connect,
            throughput: vec![],
            update,
            load: vec![],
            memory: vec![],
            cli: vec![],
            kernel: vec![],
            l7: l7_sample(),
            kubernetes: vec![],
            notes: vec![],
        }
    }

    fn l7_sample() -> L7Results {
        let rounds = |rps: f64| -> Vec<L7Sample> {
            [0.9, 1.0, 1.1]
                .map(|d| L7Sample {
                    requests_per_sec: rps * d,
                    p50_us: 32e6 / (rps * d),
                    p99_us: 64e6 / (rps * d),
                    requests: (rps * d * 5.0) as u64,
                    proxy_cores: 1.0,
                    proxy_rss_kib: 10_000,
                    proxy_hwm_kib: 12_000,
                    proxy_idle_rss_kib: 9_000,
                    backend_cores: 0.3,
                })
                .to_vec()
        };
        let mut runs = Vec::new();
        for load in [L7Load::Http1, L7Load::Http2] {
            let direct = rounds(100_000.0);
            let nginx = rounds(40_000.0);
            for (variant, rps) in [
                (L7Variant::Direct, 100_000.0),
                (L7Variant::Vsteer, 44_000.0),
                (L7Variant::Nginx, 40_000.0),
                (L7Variant::Haproxy, 36_000.0),
            ] {
                runs.push(L7Run::from_rounds(
                    load,
                    variant,
                    rounds(rps),
                    &direct,
                    &nginx,
                ));
            }
        }
        L7Results {
            runs,
            kernel_path: vec![],
            wrk_connections: 32,
            h2load_clients: 4,
            h2load_streams: 4,
            secs: 5,
        }
    }

    /// A fresh directory under the system's temporary one, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = std::env::temp_dir().join(format!(
                "vsteer-plot-test-{name}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn read_svg(path: &Path) -> String {
        let svg = std::fs::read_to_string(path).unwrap();
        assert!(
            svg.starts_with("<svg"),
            "{}: {}",
            path.display(),
            &svg[..80]
        );
        assert!(svg.trim_end().ends_with("</svg>"), "{}", path.display());
        for bad in ["NaN", "inf"] {
            assert!(!svg.contains(bad), "{bad} in {}", path.display());
        }
        svg
    }

    #[test]
    fn writes_both_plots_with_every_series() {
        let dir = TempDir::new("full");
        let paths = write_all(&sample(), &dir.0).unwrap();
        assert_eq!(
            paths,
            [
                dir.0.join("connect.svg"),
                dir.0.join("update.svg"),
                dir.0.join("l7.svg")
            ]
        );
        let connect = read_svg(&paths[0]);
        for needle in [
            "Short connections: rate relative to direct",
            "vsteer",
            "iptables DNAT",
            "haproxy (TCP)",
            "direct = 1.0",
            "services configured",
            "30,000",
            "1,000",
        ] {
            assert!(
                connect.contains(needle),
                "{needle:?} missing in connect.svg"
            );
        }
        let update = read_svg(&paths[1]);
        for needle in [
            "vsteer apply",
            "vsteer end to end (settle excluded)",
            "iptables-restore",
            "ms (log scale; bars: min–max)",
            "10,000",
        ] {
            assert!(update.contains(needle), "{needle:?} missing in update.svg");
        }
        let l7 = read_svg(&paths[2]);
        for needle in [
            "L7 proxies: requests/s relative to nginx",
            "nginx = 1.0",
            "vsteer",
            "haproxy (HTTP)",
            "direct",
            "wrk HTTP/1.1",
            "h2load HTTP/2",
        ] {
            assert!(l7.contains(needle), "{needle:?} missing in l7.svg");
        }
    }

    #[test]
    fn empty_and_broken_data_say_no_data() {
        let dir = TempDir::new("empty");
        let mut results = sample();
        results.update.clear();
        results.l7 = L7Results::default();
        // No direct run: no ratio to plot.
        results.connect.retain(|run| run.variant != Variant::Direct);
        let paths = write_all(&results, &dir.0).unwrap();
        assert_eq!(paths.len(), 3);
        for path in &paths {
            assert!(read_svg(path).contains("no data"), "{}", path.display());
        }

        // NaN and zero values are left out, not drawn.
        let mut results = sample();
        for run in &mut results.connect[0..2] {
            for round in &mut run.rounds {
                round.conns_per_sec = f64::NAN;
            }
        }
        results.update[0].vsteer_apply_ms = Stat::of(&[0.0]);
        results.update[1].iptables_restore_ms = Stat::of(&[]);
        let paths = write_all(&results, &dir.0).unwrap();
        let connect = read_svg(&paths[0]);
        assert!(connect.contains("iptables DNAT"));
        assert!(!connect.contains("no data"));
        read_svg(&paths[1]);
    }
}
