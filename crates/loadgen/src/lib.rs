//! Benchmark tools for the gateway: `mjpeg-load` opens N clients that read
//! and strictly parse MJPEG streams; `floor-server` is the least work any
//! server could do to deliver the same bytes, measured beside the gateway.

/// Percentile of sorted samples (`q` in 0..=1); 0 for none.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(super::percentile(&v, 0.5), 51.0);
        assert_eq!(super::percentile(&v, 0.99), 99.0);
        assert_eq!(super::percentile(&v, 1.0), 100.0);
        assert_eq!(super::percentile(&[], 0.5), 0.0);
    }
}
