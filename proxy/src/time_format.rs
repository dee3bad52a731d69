//! `%START_TIME%` and `%EMIT_TIME%` in header values: a UTC time in Envoy's default format
//! (`2016-04-15T20:17:00.310Z`) or a strftime-like one. Supported: `%Y %y %m %d %e %H %M %S
//! %j %F %T %z %Z %s %%`, Envoy's `%E<n>S` (seconds with n fractional digits, `%E*S` all
//! nine) and `%<n>f` (n fractional digits); any other specifier is written as it stands.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

const DEFAULT: &str = "%Y-%m-%dT%H:%M:%E3SZ";

/// Calendar fields of a UTC instant.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    yday: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    epoch: i64,
}

fn civil(t: SystemTime) -> Civil {
    let (epoch, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => (
            -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
            0,
        ),
    };
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400) as u32;
    // Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = BEFORE[(month - 1) as usize] + day + u32::from(leap && month > 2);
    Civil {
        year,
        month,
        day,
        yday,
        hour: secs / 3600,
        minute: secs / 60 % 60,
        second: secs % 60,
        nanos,
        epoch,
    }
}

/// `t` in `format` (Envoy's default when `None`).
pub(crate) fn format(t: SystemTime, format: Option<&str>) -> String {
    let c = civil(t);
    let spec = format.unwrap_or(DEFAULT);
    let mut out = String::with_capacity(spec.len() + 16);
    let mut chars = spec.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            out.push(ch);
            continue;
        }
        let Some(next) = chars.next() else {
            out.push('%');
            break;
        };
        let fraction = |out: &mut String, digits: usize| {
            let digits = digits.min(9);
            let frac = format!("{:09}", c.nanos);
            out.push_str(&frac[..digits]);
        };
        // Writing to a String cannot fail.
        let _ = match next {
            'Y' => write!(out, "{}", c.year),
            'y' => write!(out, "{:02}", c.year.rem_euclid(100)),
            'm' => write!(out, "{:02}", c.month),
            'd' => write!(out, "{:02}", c.day),
            'e' => write!(out, "{:2}", c.day),
            'H' => write!(out, "{:02}", c.hour),
            'M' => write!(out, "{:02}", c.minute),
            'S' => write!(out, "{:02}", c.second),
            'j' => write!(out, "{:03}", c.yday),
            'F' => write!(out, "{}-{:02}-{:02}", c.year, c.month, c.day),
            'T' => write!(out, "{:02}:{:02}:{:02}", c.hour, c.minute, c.second),
            'z' => write!(out, "+0000"),
            'Z' => write!(out, "UTC"),
            's' => write!(out, "{}", c.epoch),
            '%' => write!(out, "%"),
            'E' if matches!(chars.peek(), Some('*' | '1'..='9')) => {
                let n = chars.next().and_then(|d| d.to_digit(10)).unwrap_or(9) as usize;
                if chars.peek() == Some(&'S') {
                    chars.next();
                    let _ = write!(out, "{:02}.", c.second);
                    fraction(&mut out, n);
                } else {
                    out.push_str("%E");
                }
                Ok(())
            }
            d @ '1'..='9' if chars.peek() == Some(&'f') => {
                chars.next();
                fraction(&mut out, d.to_digit(10).unwrap_or(3) as usize);
                Ok(())
            }
            other => {
                out.push('%');
                out.push(other);
                Ok(())
            }
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn envoys_default_and_specifiers() {
        // Envoy's documented example instant.
        let t = at(1_460_751_420, 310);
        assert_eq!(format(t, None), "2016-04-15T20:17:00.310Z");
        assert_eq!(format(t, Some("%s")), "1460751420");
        assert_eq!(
            format(t, Some("%F %T %z %j %6f %%")),
            "2016-04-15 20:17:00 +0000 106 310000 %"
        );
        assert_eq!(format(t, Some("%E*S|%q")), "00.310000000|%q");
        assert_eq!(format(at(951_782_400, 0), None), "2000-02-29T00:00:00.000Z");
        assert_eq!(format(at(0, 0), Some("%Y %j")), "1970 001");
    }
}
