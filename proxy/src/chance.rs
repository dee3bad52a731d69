//! A share of requests drawn at random per request (a fault's or a mirror's `percentage`),
//! in millionths: Envoy's fractional percent at its finest.

#[derive(Debug, Clone, Copy)]
pub(crate) struct Chance(u32);

impl Chance {
    /// `percent` of 0.0 to 100.0 (clamped).
    pub(crate) fn of_percent(percent: f64) -> Chance {
        Chance((percent.clamp(0.0, 100.0) * 10_000.0).round() as u32)
    }

    /// Whether this request is among the share.
    pub(crate) fn hit(self) -> bool {
        fastrand::u32(..1_000_000) < self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chances_are_millionths() {
        assert_eq!(Chance::of_percent(100.0).0, 1_000_000);
        assert_eq!(Chance::of_percent(0.0001).0, 1);
        assert_eq!(Chance::of_percent(150.0).0, 1_000_000);
        assert!(Chance::of_percent(100.0).hit());
        assert!(!Chance::of_percent(0.0).hit());
    }
}
