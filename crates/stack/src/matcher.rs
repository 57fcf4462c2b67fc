//! ALB's health-check success codes (`matcher.http_code`): the grammar the stack file's
//! `health_check.matcher` is validated against and the data plane's checks match with.

use std::fmt;

/// Success codes: `200`, `200,202`, `200-299` (ALB `matcher.http_code` syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher(Vec<(u16, u16)>);

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl Matcher {
    /// Parses the ALB syntax; the error says what was expected.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let bad =
            || format!("expected codes such as 200, 200,202 or 200-299 (100-599), got {spec:?}");
        let mut ranges = Vec::new();
        for part in spec.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim(), hi.trim()),
                None => (part, part),
            };
            let lo: u16 = lo.parse().map_err(|_| bad())?;
            let hi: u16 = hi.parse().map_err(|_| bad())?;
            if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
                return Err(bad());
            }
            ranges.push((lo, hi));
        }
        Ok(Self(ranges))
    }

    /// Whether `status` passes.
    pub fn matches(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_syntax() {
        let m = Matcher::parse("200,202-204").unwrap();
        assert!(m.matches(200) && m.matches(203) && !m.matches(201) && !m.matches(500));
        for bad in ["", "abc", "99", "600", "300-200", "200-", "2OO"] {
            assert!(Matcher::parse(bad).is_err(), "{bad}");
        }
    }
}
