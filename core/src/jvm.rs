//! What the JVM would print and hash: `Double.toString`, `toString` of tuples, `String.hashCode`.

use compact_str::CompactString;
use std::fmt::Write;

/// Appends `x` as Java's `Double.toString` (JDK 19 and later: the shortest decimal that reads back as `x`).
pub fn write_double(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("NaN");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    if x < 0.0 {
        out.push('-');
    }
    let a = x.abs();
    // Shortest round-trip digits, as d.ddddde<exp>.
    let mut sci = String::with_capacity(32);
    let _ = write!(sci, "{a:e}");
    if sci.split_once('e').map_or(0, |(m, _)| m.len()) == 1 {
        // Java picks the closest two-digit decimal when one digit would do (matters only for tiny subnormals).
        let mut two = String::with_capacity(32);
        let _ = write!(two, "{a:.1e}");
        if two.parse::<f64>() == Ok(a) {
            sci = two;
        }
    }
    let (mant, exp) = split_sci(&sci);
    let digits: &[u8] = mant.as_bytes();
    let digits: Vec<u8> = digits.iter().copied().filter(|c| *c != b'.').collect();
    let digits = trim_zeros(&digits);
    if (1e-3..1e7).contains(&a) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            for i in 0..int_len {
                out.push(*digits.get(i).unwrap_or(&b'0') as char);
            }
            out.push('.');
            if digits.len() > int_len {
                out.push_str(std::str::from_utf8(&digits[int_len..]).unwrap_or("0"));
            } else {
                out.push('0');
            }
        } else {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(std::str::from_utf8(digits).unwrap_or("0"));
        }
    } else {
        out.push(digits[0] as char);
        out.push('.');
        if digits.len() > 1 {
            out.push_str(std::str::from_utf8(&digits[1..]).unwrap_or("0"));
        } else {
            out.push('0');
        }
        let _ = write!(out, "E{exp}");
    }
}

fn split_sci(s: &str) -> (&str, i32) {
    let (m, e) = s.split_once('e').unwrap_or((s, "0"));
    (m, e.parse().unwrap_or(0))
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let mut end = d.len();
    while end > 1 && d[end - 1] == b'0' {
        end -= 1;
    }
    &d[..end]
}

/// Java's `Double.toString(x)`.
pub fn double_to_string(x: f64) -> String {
    let mut s = String::new();
    write_double(&mut s, x);
    s
}

/// Values that print as the JVM's `toString` would, as Spark's `print()` shows them.
pub trait JvmDisplay {
    /// Appends the JVM `toString` of `self` to `out`.
    fn write_jvm(&self, out: &mut String);
}

impl JvmDisplay for f64 {
    fn write_jvm(&self, out: &mut String) {
        write_double(out, *self)
    }
}
impl JvmDisplay for f32 {
    fn write_jvm(&self, out: &mut String) {
        // Float.toString: shortest digits for an f32, in the same layout.
        let s = format!("{}", self);
        let v: f64 = s.parse().unwrap_or(f64::NAN);
        write_double(out, v)
    }
}
macro_rules! int_display {
    ($($t:ty),*) => {$(
        impl JvmDisplay for $t {
            fn write_jvm(&self, out: &mut String) {
                let _ = write!(out, "{}", self);
            }
        }
    )*};
}
int_display!(i8, i16, i32, i64, i128, u8, u16, u32, u64, usize, isize);

impl JvmDisplay for bool {
    fn write_jvm(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}
impl JvmDisplay for str {
    fn write_jvm(&self, out: &mut String) {
        out.push_str(self);
    }
}
impl JvmDisplay for String {
    fn write_jvm(&self, out: &mut String) {
        out.push_str(self);
    }
}
impl JvmDisplay for CompactString {
    fn write_jvm(&self, out: &mut String) {
        out.push_str(self);
    }
}
impl<T: JvmDisplay + ?Sized> JvmDisplay for &T {
    fn write_jvm(&self, out: &mut String) {
        (**self).write_jvm(out)
    }
}
impl<T: JvmDisplay> JvmDisplay for Option<T> {
    fn write_jvm(&self, out: &mut String) {
        match self {
            Some(v) => {
                out.push_str("Some(");
                v.write_jvm(out);
                out.push(')');
            }
            None => out.push_str("None"),
        }
    }
}
impl<A: JvmDisplay, B: JvmDisplay> JvmDisplay for (A, B) {
    fn write_jvm(&self, out: &mut String) {
        out.push('(');
        self.0.write_jvm(out);
        out.push(',');
        self.1.write_jvm(out);
        out.push(')');
    }
}
impl<A: JvmDisplay, B: JvmDisplay, C: JvmDisplay> JvmDisplay for (A, B, C) {
    fn write_jvm(&self, out: &mut String) {
        out.push('(');
        self.0.write_jvm(out);
        out.push(',');
        self.1.write_jvm(out);
        out.push(',');
        self.2.write_jvm(out);
        out.push(')');
    }
}

/// A hash that is the same on every run and machine: the JVM's `hashCode`, as Spark's `HashPartitioner` uses.
pub trait StableHash {
    /// The JVM `hashCode` of this value.
    fn stable_hash(&self) -> i32;
}

impl StableHash for str {
    fn stable_hash(&self) -> i32 {
        let mut h: i32 = 0;
        if self.is_ascii() {
            for &b in self.as_bytes() {
                h = h.wrapping_mul(31).wrapping_add(b as i32);
            }
        } else {
            for u in self.encode_utf16() {
                h = h.wrapping_mul(31).wrapping_add(u as i32);
            }
        }
        h
    }
}
impl StableHash for String {
    fn stable_hash(&self) -> i32 {
        self.as_str().stable_hash()
    }
}
impl StableHash for CompactString {
    fn stable_hash(&self) -> i32 {
        self.as_str().stable_hash()
    }
}
impl StableHash for i64 {
    fn stable_hash(&self) -> i32 {
        (*self ^ ((*self as u64) >> 32) as i64) as i32
    }
}
impl StableHash for i32 {
    fn stable_hash(&self) -> i32 {
        *self
    }
}
impl StableHash for u32 {
    fn stable_hash(&self) -> i32 {
        *self as i32
    }
}

/// Spark's `HashPartitioner.getPartition`: the non-negative `hashCode mod n`.
#[inline]
pub fn partition_of<K: StableHash + ?Sized>(key: &K, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let h = key.stable_hash() as i64;
    if n.is_power_of_two() {
        // rem_euclid by a power of two is a mask in two's complement (no division on the per-record path).
        return h as usize & (n - 1);
    }
    h.rem_euclid(n as i64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_as_the_jvm() {
        let cases: &[(f64, &str)] = &[
            (13.0, "13.0"),
            (12.5, "12.5"),
            (37.0 / 3.0, "12.333333333333334"),
            (1.0e-4, "1.0E-4"),
            (1.0e8, "1.0E8"),
            (0.001, "0.001"),
            (9_999_999.0, "9999999.0"),
            (10_000_000.0, "1.0E7"),
            (123_456_789.0, "1.23456789E8"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::MAX, "1.7976931348623157E308"),
            (f64::MIN_POSITIVE, "2.2250738585072014E-308"),
            (4.9e-324, "4.9E-324"),
            (1.0e23, "1.0E23"),
            (0.000_123_4, "1.234E-4"),
            (1.0 / 3.0, "0.3333333333333333"),
            (2.0 / 3.0, "0.6666666666666666"),
            (9.223372036854776E18, "9.223372036854776E18"),
        ];
        for (x, want) in cases {
            assert_eq!(double_to_string(*x), *want, "{x:e}");
        }
    }

    #[test]
    fn tuples_and_strings() {
        let mut s = String::new();
        ("a", 12.5).write_jvm(&mut s);
        assert_eq!(s, "(a,12.5)");
        s.clear();
        (CompactString::from("é"), 3i64).write_jvm(&mut s);
        assert_eq!(s, "(é,3)");
    }

    #[test]
    fn string_hash_is_java_hash_code() {
        assert_eq!("a".stable_hash(), 97);
        assert_eq!("hello".stable_hash(), 99_162_322);
        assert_eq!("".stable_hash(), 0);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE
        assert_eq!("polygenelubricants".stable_hash(), i32::MIN);
        assert_eq!(partition_of("polygenelubricants", 2), 0);
        assert_eq!(partition_of("a", 2), 1);
        assert_eq!(partition_of("b", 2), 0);
        // Negative hashCode -217287203: Java's nonNegativeMod gives -3 + 4 = 1 (n = 4), -3 + 8 = 5 (n = 8),
        // -2 + 3 = 1 (n = 3); the power-of-two mask and the division must agree.
        assert_eq!("hello world!".stable_hash(), -217287203);
        assert_eq!(partition_of("hello world!", 2), 1);
        assert_eq!(partition_of("hello world!", 3), 1);
        assert_eq!(partition_of("hello world!", 4), 1);
        assert_eq!(partition_of("hello world!", 8), 5);
        assert_eq!(partition_of("polygenelubricants", 3), 1);
        assert_eq!(partition_of("polygenelubricants", 8), 0);
        assert_eq!("é".stable_hash(), 0xe9);
        assert_eq!("😀".stable_hash(), 0xD83D * 31 + 0xDE00);
        assert_eq!((-1i64).stable_hash(), 0);
        assert_eq!((1i64 << 32).stable_hash(), 1);
    }
}
