//! Pictures of a run: a PNG grid of test digits beside their capsule reconstructions (the
//! paper's Figure 3), and an SVG of training loss and test accuracy per epoch.
use std::fmt::Write as _;
use std::io::BufWriter;
use std::path::Path;

use stategrad::autograd::Result;
use stategrad::nn::checkpoint::write_atomic;

use crate::train::EpochRecord;

/// Writes `pairs` (image, reconstruction; each `side * side` values in `[0, 1]`) as a
/// grayscale PNG: `per_row` pairs per row, the input left of its reconstruction.
pub fn write_recon_grid(path: &Path, pairs: &[(Vec<f32>, Vec<f32>)], side: usize, per_row: usize) -> Result<()> {
    let (gap, per_row) = (2, per_row.max(1));
    let rows = pairs.len().div_ceil(per_row).max(1);
    let cell = 2 * side + gap; // input, reconstruction, gap
    let (w, h) = (per_row * cell + gap, rows * (side + gap) + gap);
    let mut px = vec![64u8; w * h];
    for (n, (img, rec)) in pairs.iter().enumerate() {
        let (x0, y0) = (gap + (n % per_row) * cell, gap + (n / per_row) * (side + gap));
        for (k, src) in [img, rec].into_iter().enumerate() {
            for y in 0..side {
                for x in 0..side {
                    let v = src.get(y * side + x).copied().unwrap_or(0.0);
                    px[(y0 + y) * w + x0 + k * side + x] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
    }
    let fail = |e: png::EncodingError| std::io::Error::other(e.to_string());
    write_atomic(path, |out| {
        let mut enc = png::Encoder::new(BufWriter::new(out), w as u32, h as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().map_err(fail)?.write_image_data(&px).map_err(fail)
    })
}

/// Writes an SVG with the training loss (left axis) and test accuracy (right axis) per epoch.
pub fn write_curves(path: &Path, history: &[EpochRecord]) -> Result<()> {
    let (w, h, m) = (640.0, 360.0, 50.0);
    let n = history.len().max(2) as f64;
    let x = |i: usize| m + (w - 2.0 * m) * i as f64 / (n - 1.0);
    let max_loss = history.iter().map(|r| r.train_loss).fold(1e-9, f64::max);
    let accs: Vec<f64> = history.iter().map(|r| r.test_acc).filter(|a| a.is_finite()).collect();
    let lo_acc = accs.iter().copied().fold(1.0, f64::min).clamp(0.0, 0.9);
    let y_loss = |v: f64| h - m - (h - 2.0 * m) * v / max_loss;
    let y_acc = |a: f64| h - m - (h - 2.0 * m) * (a - lo_acc) / (1.0 - lo_acc).max(1e-9);
    let line = |pts: Vec<(f64, f64)>, color: &str| {
        let d: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let dots: String =
            pts.iter().map(|(a, b)| format!(r#"<circle cx="{a:.1}" cy="{b:.1}" r="3" fill="{color}"/>"#)).collect();
        format!(r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>{dots}"#, d.join(" "))
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<line x1="{m}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{m}" y1="{m}" x2="{m}" y2="{b}" stroke="black"/>
<line x1="{r}" y1="{m}" x2="{r}" y2="{b}" stroke="black"/>
<text x="{m}" y="30" fill="steelblue">train loss (0 - {max_loss:.4})</text>
<text x="{r}" y="30" fill="darkorange" text-anchor="end">test accuracy ({:.1}% - 100%)</text>
<text x="{cx}" y="{lb}" text-anchor="middle">epoch (1 - {})</text>
"#,
        100.0 * lo_acc,
        history.len(),
        b = h - m,
        r = w - m,
        cx = w / 2.0,
        lb = h - 15.0,
    );
    s += &line(history.iter().enumerate().map(|(i, r)| (x(i), y_loss(r.train_loss))).collect(), "steelblue");
    let acc_pts = history.iter().enumerate().filter(|(_, r)| r.test_acc.is_finite());
    s += &line(acc_pts.map(|(i, r)| (x(i), y_acc(r.test_acc))).collect(), "darkorange");
    s += "\n</svg>\n";
    write_atomic(path, |out| out.write_all(s.as_bytes()))
}
