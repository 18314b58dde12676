//! Memory sizes as people write them: `64m`, `1g`, `512k`, `1.5GiB`, `4096`.

use serde::{Deserialize, Deserializer};

/// Parses a size into bytes. Units are binary (Docker's `RAMInBytes`):
/// `b`, `k`, `m`, `g`, `t`, `p` (case-insensitive), optionally followed by
/// `b` or `ib` (`64m`, `64MB`, `64MiB` are all 64 × 2²⁰). A number without a
/// unit is bytes. Fractions are allowed (`1.5g`); the result is truncated to
/// whole bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty size".to_string());
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(format!("invalid size `{text}`: no number"));
    }
    let unit = unit.trim().to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return Err(format!("invalid size `{text}`: unknown unit `{unit}` (use k, m, g, t)")),
    };
    let multiplier = 1u64 << shift;
    if let Some((int, frac)) = number.split_once('.') {
        if frac.contains('.') || (int.is_empty() && frac.is_empty()) {
            return Err(format!("invalid size `{text}`"));
        }
        let value: f64 = number.parse().map_err(|_| format!("invalid size `{text}`"))?;
        let bytes = value * multiplier as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(format!("size `{text}` is too large"));
        }
        Ok(bytes as u64)
    } else {
        let value: u64 = number.parse().map_err(|_| format!("invalid size `{text}`"))?;
        value.checked_mul(multiplier).ok_or_else(|| format!("size `{text}` is too large"))
    }
}

/// [`parse_size`] into an `i64` (what OCI memory limits use).
pub fn parse_size_i64(text: &str) -> Result<i64, String> {
    let v = parse_size(text)?;
    i64::try_from(v).map_err(|_| format!("size `{text}` is too large"))
}

/// A size in config: either a number of bytes or a string like `"64m"`.
/// Use with `#[serde(deserialize_with = "berth_sdk::size::deserialize_opt")]`
/// on an `Option<u64>` field, or deserialize a [`Size`] directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Size(n)),
            Raw::Text(t) => parse_size(&t).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

/// `Option<Size>` as `Option<u64>`, for `deserialize_with`.
pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<Size>::deserialize(d)?.map(|s| s.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("64MB"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size(" 2T "), Ok(2 << 40));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("10b"), Ok(10));
    }

    #[test]
    fn errors() {
        assert!(parse_size("").is_err());
        assert!(parse_size("m").is_err());
        assert!(parse_size("12x").unwrap_err().contains("unknown unit"));
        assert!(parse_size("1.2.3m").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("20000000p").unwrap_err().contains("too large"));
    }

    #[test]
    fn serde_size() {
        let v: Size = serde_json::from_str("\"64m\"").unwrap();
        assert_eq!(v, Size(64 << 20));
        let v: Size = serde_json::from_str("1024").unwrap();
        assert_eq!(v, Size(1024));
        assert!(serde_json::from_str::<Size>("\"lots\"").is_err());
    }
}
