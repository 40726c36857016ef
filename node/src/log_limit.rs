//! A rate limit for log lines that one event each could produce (a
//! connection ending, a connection refused): a flood of such events writes
//! a few lines a second, and says how many it left out.

use std::fmt;
use std::time::{Duration, Instant};

/// A token bucket: `BURST` lines at once, then one per `EVERY`.
#[derive(Debug, Default)]
pub struct LogLimit {
    tokens: u32,
    last_refill: Option<Instant>,
    suppressed: u64,
}

const BURST: u32 = 20;
const EVERY: Duration = Duration::from_millis(200);

/// What a line let through says about those left out before it: nothing,
/// or " (N similar lines left out)".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suppressed(u64);

impl fmt::Display for Suppressed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, " ({n} similar lines left out)"),
        }
    }
}

impl LogLimit {
    /// `Some` if a line may be written at `now` (with what to say of the
    /// lines left out before it); `None` if it is to be left out.
    pub fn allow(&mut self, now: Instant) -> Option<Suppressed> {
        match self.last_refill {
            None => {
                self.tokens = BURST;
                self.last_refill = Some(now);
            }
            Some(last) => {
                let earned = now.saturating_duration_since(last).as_millis() / EVERY.as_millis();
                if earned > 0 {
                    let earned = u32::try_from(earned).unwrap_or(u32::MAX);
                    self.tokens = self.tokens.saturating_add(earned).min(BURST);
                    self.last_refill = Some(last + EVERY * earned.min(1 << 20));
                }
            }
        }
        if self.tokens == 0 {
            self.suppressed += 1;
            return None;
        }
        self.tokens -= 1;
        Some(Suppressed(std::mem::take(&mut self.suppressed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_five_lines_a_second_and_a_count_of_the_rest() {
        let start = Instant::now();
        let mut limit = LogLimit::default();
        let allowed = (0..1000).filter(|_| limit.allow(start).is_some()).count();
        assert_eq!(allowed, BURST as usize);
        let later = start + Duration::from_secs(1);
        assert_eq!(
            limit.allow(later).map(|s| s.to_string()),
            Some(" (980 similar lines left out)".into())
        );
        let allowed = (0..1000).filter(|_| limit.allow(later).is_some()).count();
        assert_eq!(allowed, 4, "five a second");
    }
}
