//! The scaling charts: PNG line charts drawn with plotters into `runtime/benches/`.

use std::path::PathBuf;

use anyhow::Context;
use plotters::prelude::*;

/// Where the charts go: beside BENCHMARKS.md.
fn benches_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime/benches"))
}

/// A font for the charts' text: plotters draws text through ab_glyph from a font file, here
/// DejaVu Sans (Debian's `fonts-dejavu-core`).
fn register_font() -> anyhow::Result<()> {
    const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    let bytes = std::fs::read(FONT).with_context(|| {
        format!("reading {FONT} for the charts' text (apt-get install fonts-dejavu-core)")
    })?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into()))
        .map_err(|_| anyhow::anyhow!("{FONT} is not a font plotters can read"))
}

/// One line of a panel: its name and a y value per x.
pub(crate) type Series = (String, Vec<f64>);

/// One panel of a chart: its y axis's label and its lines.
pub(crate) struct Panel {
    pub(crate) y_label: &'static str,
    pub(crate) series: Vec<Series>,
}

/// Draws `panels` side by side against `xs` (on a log scale: partitions double, sizes grow
/// tenfold) into `runtime/benches/{file}`; returns the path written.
pub(crate) fn draw(
    file: &str,
    title: &str,
    x_label: &str,
    xs: &[f64],
    panels: &[Panel],
) -> anyhow::Result<PathBuf> {
    static FONT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| register_font().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)?;
    let path = benches_dir().join(file);
    let width = 640 * panels.len() as u32;
    let root = BitMapBackend::new(&path, (width, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let (x_min, x_max) = (xs[0], xs[xs.len() - 1]);
    for (area, panel) in root.split_evenly((1, panels.len())).iter().zip(panels) {
        let y_max = panel
            .series
            .iter()
            .flat_map(|(_, ys)| ys.iter().copied())
            .fold(0.0, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d((x_min..x_max).log_scale(), 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc(panel.y_label)
            .draw()?;
        for ((name, ys), color) in panel.series.iter().zip([RED, BLUE, GREEN, BLACK]) {
            let points: Vec<(f64, f64)> = xs.iter().copied().zip(ys.iter().copied()).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(path.clone())
}
