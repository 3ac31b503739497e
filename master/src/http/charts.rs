//! Charts drawn on the server as inline SVG (no JavaScript): a job's daily runs as stacked
//! bars and its recent durations, or the fleet's runs per minute, as a sparkline. They are
//! built from numbers and dates only, so nothing a user typed reaches the markup.

use std::fmt::Write as _;

use crate::read::stats::Day;

const BAR_WIDTH: usize = 18;
const BAR_GAP: usize = 4;
const HEIGHT: f64 = 80.0;

/// Stacked bars, one per day: succeeded (bottom), failed, skipped; each with a tooltip.
pub fn daily_bars(days: &[Day]) -> String {
    let width = days.len() * (BAR_WIDTH + BAR_GAP);
    let top = days
        .iter()
        .map(|d| d.succeeded + d.failed + d.other)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut svg = format!(
        r#"<svg class="chart" role="img" aria-label="runs per day" width="{width}" height="{h}" viewBox="0 0 {width} {h}">"#,
        h = HEIGHT + 14.0
    );
    for (i, day) in days.iter().enumerate() {
        let x = i * (BAR_WIDTH + BAR_GAP);
        let mut base = HEIGHT;
        let _ = write!(
            svg,
            "<g><title>{}: {} succeeded, {} failed, {} skipped</title>",
            day.date, day.succeeded, day.failed, day.other
        );
        for (count, class) in [
            (day.succeeded, "ok"),
            (day.failed, "bad"),
            (day.other, "other"),
        ] {
            if count == 0 {
                continue;
            }
            #[allow(clippy::cast_precision_loss)]
            let h = (count as f64 / top as f64 * HEIGHT).max(1.0);
            base -= h;
            let _ = write!(
                svg,
                r#"<rect class="{class}" x="{x}" y="{base:.1}" width="{BAR_WIDTH}" height="{h:.1}"/>"#
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text></g>"#,
            x + BAR_WIDTH / 2,
            HEIGHT + 12.0,
            day.date.format("%d")
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A line through `values`, oldest first, scaled to the largest; `label` names it for
/// screen readers and its tooltip.
pub fn sparkline(values: &[i64], label: &str) -> String {
    let width = 240.0;
    let height = 40.0;
    let top = values.iter().copied().max().unwrap_or(0).max(1);
    #[allow(clippy::cast_precision_loss)]
    let step = if values.len() > 1 {
        width / (values.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            #[allow(clippy::cast_precision_loss)]
            let (x, y) = (
                i as f64 * step,
                height - *v as f64 / top as f64 * (height - 2.0) - 1.0,
            );
            format!("{x:.1},{y:.1}")
        })
        .collect();
    format!(
        r#"<svg class="spark" role="img" aria-label="{label}" width="{width}" height="{height}" viewBox="0 0 {width} {height}"><title>{label}</title><polyline fill="none" points="{}"/></svg>"#,
        points.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn bars_stack_by_status_and_scale_to_the_busiest_day() {
        let day = |d, s, f| Day {
            date: NaiveDate::from_ymd_opt(2026, 11, d).unwrap(),
            succeeded: s,
            failed: f,
            other: 0,
        };
        let svg = daily_bars(&[day(26, 10, 0), day(27, 5, 5)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("class=\"ok\"").count(), 2);
        assert_eq!(svg.matches("class=\"bad\"").count(), 1);
        assert!(svg.contains("2026-11-27: 5 succeeded, 5 failed, 0 skipped"));
        assert!(svg.contains(r#"y="0.0" width="18" height="80.0""#), "{svg}");
    }

    #[test]
    fn a_sparkline_has_a_point_per_value() {
        let svg = sparkline(&[0, 5, 10], "durations");
        assert!(
            svg.contains(r#"points="0.0,39.0 120.0,20.0 240.0,1.0""#),
            "{svg}"
        );
        assert!(sparkline(&[], "none").contains(r#"points="""#));
    }
}
