//! The saga benchmark's latency results as files side by side: a JSON summary per offered load
//! and one PNG with each load's per-hop latency distribution (cumulative, on a log scale).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context as _;
use plotters::prelude::*;
use plotters::style::FontStyle;
use serde::Serialize;

use crate::hops::{Hop, Summary};

/// One hop's durations at one load, in milliseconds.
#[derive(Debug, Clone)]
pub struct HopResult {
    /// The hop measured.
    pub hop: Hop,
    /// Its durations, sorted ascending.
    pub samples: Vec<f64>,
}

impl HopResult {
    /// The hop's durations, sorted.
    pub fn new(hop: Hop, mut samples: Vec<f64>) -> Self {
        samples.sort_by(|a, b| a.total_cmp(b));
        Self { hop, samples }
    }

    /// Percentiles of the durations; `None` when no order had both records seen.
    pub fn summary(&self) -> Option<Summary> {
        Summary::of(self.samples.clone())
    }
}

/// What one steady offered load gave.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// How the load was asked for, e.g. `100` or `half`.
    pub requested: String,
    /// Orders per second offered.
    pub rate: f64,
    /// How long orders were offered, in seconds.
    pub seconds: u64,
    /// Orders placed.
    pub sent: usize,
    /// Orders whose `OrderConfirmed` was seen.
    pub completed: usize,
    /// From the first order sent to the last one confirmed, in seconds.
    pub drained_after: f64,
    /// Every consecutive hop, then the end-to-end latency.
    pub hops: Vec<HopResult>,
}

fn round3(x: f64) -> f64 {
    (x * 1_000.0).round() / 1_000.0
}

/// One hop in the JSON summary; percentiles are absent when no order had both records seen.
#[derive(Debug, Serialize)]
struct HopJson {
    from: &'static str,
    to: &'static str,
    by: &'static str,
    count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p90_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_ms: Option<f64>,
}

impl HopJson {
    fn new(h: &HopResult) -> Self {
        let s = h.summary();
        let ms = |f: fn(&Summary) -> f64| s.as_ref().map(|s| round3(f(s)));
        Self {
            from: h.hop.from.name(),
            to: h.hop.to.name(),
            by: h.hop.by,
            count: h.samples.len(),
            min_ms: ms(|s| s.min),
            p50_ms: ms(|s| s.p50),
            p90_ms: ms(|s| s.p90),
            p99_ms: ms(|s| s.p99),
            max_ms: ms(|s| s.max),
        }
    }
}

/// One load in the JSON summary.
#[derive(Debug, Serialize)]
struct LoadJson {
    requested: String,
    offered_orders_per_s: f64,
    seconds: u64,
    orders_sent: usize,
    orders_completed: usize,
    drained_after_s: f64,
    hops: Vec<HopJson>,
}

/// The JSON summary's top level.
#[derive(Debug, Serialize)]
struct SummaryJson {
    benchmark: &'static str,
    timing: &'static str,
    capacity_orders: usize,
    capacity_orders_per_s: f64,
    loads: Vec<LoadJson>,
}

/// The JSON summary, pretty-printed with fields in the order declared above: the capacity
/// figure, and per load its rate, counts and per-hop percentiles.
pub fn to_json(
    capacity: f64,
    capacity_orders: usize,
    loads: &[LoadResult],
) -> anyhow::Result<String> {
    let summary = SummaryJson {
        benchmark: "saga",
        timing: "each record timed when a read_committed consumer in the bench process received it",
        capacity_orders,
        capacity_orders_per_s: round3(capacity),
        loads: loads
            .iter()
            .map(|l| LoadJson {
                requested: l.requested.clone(),
                offered_orders_per_s: round3(l.rate),
                seconds: l.seconds,
                orders_sent: l.sent,
                orders_completed: l.completed,
                drained_after_s: round3(l.drained_after),
                hops: l.hops.iter().map(HopJson::new).collect(),
            })
            .collect(),
    };
    Ok(serde_json::to_string_pretty(&summary)? + "\n")
}

/// Writes `text` to `path`, creating its folder.
pub fn write_json(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Durations below this are drawn at it: a log axis has no zero, and the one in-transaction hop
/// sits there.
const FLOOR_MS: f64 = 0.1;
/// At most this many points per curve; more add bytes, not detail.
const MAX_POINTS: usize = 800;
const WIDTH: u32 = 1_700;
const PANEL_HEIGHT: u32 = 460;
const LEGEND_WIDTH: u32 = 660;

/// The cumulative distribution of sorted `samples` as (ms, fraction ≤) points, durations
/// raised to [`FLOOR_MS`], thinned to at most [`MAX_POINTS`] while keeping the last point.
pub fn cdf_points(sorted: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(MAX_POINTS);
    let mut points: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (sorted[i].max(FLOOR_MS), (i + 1) as f64 / n as f64))
        .collect();
    if !(n - 1).is_multiple_of(step) {
        points.push((sorted[n - 1].max(FLOOR_MS), 1.0));
    }
    points
}

fn register_font() -> anyhow::Result<()> {
    static LOADED: OnceLock<bool> = OnceLock::new();
    // The bitmap backend draws text only with a registered font; embedding one keeps the chart
    // independent of the fonts a machine has installed.
    let loaded = *LOADED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
    });
    anyhow::ensure!(loaded, "the embedded DejaVu Sans font did not load");
    Ok(())
}

/// Draws one panel per load: each hop's cumulative latency distribution, end to end in black.
pub fn draw_png(path: &Path, loads: &[LoadResult]) -> anyhow::Result<()> {
    anyhow::ensure!(!loads.is_empty(), "no load to draw");
    register_font()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let height = PANEL_HEIGHT * loads.len() as u32;
    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    for (panel, load) in root.split_evenly((loads.len(), 1)).iter().zip(loads) {
        draw_panel(panel, load)?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn draw_panel(
    panel: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    load: &LoadResult,
) -> anyhow::Result<()> {
    let (plot, legend) = panel.split_horizontally(WIDTH - LEGEND_WIDTH);
    let longest = load
        .hops
        .iter()
        .filter_map(|h| h.samples.last().copied())
        .fold(1.0_f64, f64::max);
    let end_to_end = load.hops.last().and_then(HopResult::summary);
    let requested = if load.requested == "half" {
        " (half the peak)"
    } else {
        ""
    };
    let caption = format!(
        "{:.0} orders/s offered{requested}, {} of {} orders confirmed{}",
        load.rate,
        load.completed,
        load.sent,
        end_to_end
            .map(|s| format!("; end to end p50 {:.0} ms, p99 {:.0} ms", s.p50, s.p99))
            .unwrap_or_default()
    );
    let mut chart = ChartBuilder::on(&plot)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d((FLOOR_MS..longest * 1.5).log_scale(), 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc(
            "ms from the earlier record to the later one (log scale; 0.1 and below drawn at 0.1)",
        )
        .y_desc("fraction of orders")
        .x_label_formatter(&|x| format!("{x}"))
        .draw()?;
    let last = load.hops.len().saturating_sub(1);
    for (i, h) in load.hops.iter().enumerate() {
        let style = series_style(i, i == last);
        chart.draw_series(LineSeries::new(cdf_points(&h.samples), style))?;
        let y = 40 + 24 * i as i32;
        legend.draw(&PathElement::new(vec![(8, y), (40, y)], style))?;
        let p = h
            .summary()
            .map(|s| format!("p50 {:.1}, p99 {:.1} ms", s.p50, s.p99))
            .unwrap_or_else(|| "no sample".to_owned());
        legend.draw(&Text::new(
            format!("{} ({}): {p}", h.hop.label(), h.hop.by),
            (48, y - 8),
            ("sans-serif", 13),
        ))?;
    }
    Ok(())
}

fn series_style(i: usize, end_to_end: bool) -> ShapeStyle {
    if end_to_end {
        BLACK.stroke_width(3)
    } else {
        Palette99::pick(i).stroke_width(2)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::hops::{END_TO_END, HOPS};

    #[test]
    fn a_cdf_rises_to_one_and_keeps_the_largest_sample() {
        let points = cdf_points(&[0.0, 1.0, 2.0, 4.0]);
        assert_eq!(
            points,
            vec![(FLOOR_MS, 0.25), (1.0, 0.5), (2.0, 0.75), (4.0, 1.0)]
        );
        assert!(cdf_points(&[]).is_empty());
    }

    #[test]
    fn a_long_cdf_is_thinned_but_ends_at_its_maximum() {
        let sorted: Vec<f64> = (0..10_001).map(f64::from).collect();
        let points = cdf_points(&sorted);
        assert!(points.len() <= MAX_POINTS + 1, "{}", points.len());
        assert_eq!(points.last(), Some(&(10_000.0, 1.0)));
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1)
        );
    }

    fn load() -> LoadResult {
        let mut hops: Vec<HopResult> = HOPS
            .iter()
            .enumerate()
            .map(|(i, h)| HopResult::new(*h, (1..=50).map(|k| (k * (i + 1)) as f64).collect()))
            .collect();
        hops.push(HopResult::new(END_TO_END, vec![120.0, 80.0, 100.0]));
        LoadResult {
            requested: "100".into(),
            rate: 100.0,
            seconds: 2,
            sent: 200,
            completed: 200,
            drained_after: 2.5,
            hops,
        }
    }

    #[test]
    fn the_summary_holds_each_hop_per_load() {
        let text = to_json(321.0, 3_000, &[load()]).expect("json");
        let v: Value = serde_json::from_str(&text).expect("valid json");
        let at = |key: &str| text.find(&format!("\"{key}\"")).expect("a key");
        // Declared order, not alphabetical: the run's figures before the per-load detail.
        assert!(at("benchmark") < at("capacity_orders") && at("capacity_orders") < at("loads"));
        assert!(at("from") < at("by") && at("count") < at("p50_ms"));
        assert_eq!(v["capacity_orders_per_s"], json!(321.0));
        let hops = &v["loads"][0]["hops"];
        assert_eq!(hops.as_array().map(Vec::len), Some(HOPS.len() + 1));
        assert_eq!(hops[0]["from"], json!("PlaceOrder"));
        assert_eq!(hops[0]["count"], json!(50));
        assert_eq!(hops[0]["p50_ms"], json!(25.0));
        assert_eq!(hops[0]["min_ms"], json!(1.0));
        let e2e = &hops[HOPS.len()];
        assert_eq!(
            (
                e2e["to"].clone(),
                e2e["p50_ms"].clone(),
                e2e["max_ms"].clone()
            ),
            (json!("OrderConfirmed"), json!(100.0), json!(120.0))
        );
        assert_eq!(v["loads"][0]["orders_completed"], json!(200));
        let mut empty = load();
        empty.hops[0].samples.clear();
        let v: Value =
            serde_json::from_str(&to_json(1.0, 1, &[empty]).expect("json")).expect("valid json");
        let first = &v["loads"][0]["hops"][0];
        assert_eq!(first["count"], json!(0));
        assert!(first.get("p50_ms").is_none());
    }

    #[test]
    fn the_chart_is_a_png_drawn_without_system_fonts() {
        let dir = std::env::temp_dir().join(format!("saga-chart-{}", uuid::Uuid::new_v4()));
        let path = dir.join("chart.png");
        let mut second = load();
        second.requested = "half".into();
        // An empty hop must not break the panel.
        second.hops[3].samples.clear();
        draw_png(&path, &[load(), second]).expect("a chart");
        let bytes = std::fs::read(&path).expect("the chart file");
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
