//! Spark's `print(num)` format (SPARK-SEMANTICS §4).

use crate::jvm::JvmDisplay;
use crate::time::Time;
use std::fmt::Write;

/// The 43-dash rule line of Spark's `print`.
pub const RULE: &str = "-------------------------------------------";

/// Appends one batch as Spark's `print(num)` shows it: header, up to `num` elements, `...` if there were more, an empty line.
pub fn write_batch<T: JvmDisplay>(out: &mut String, time: Time, items: &[T], num: usize) {
    out.push_str(RULE);
    let _ = write!(out, "\nTime: {time}\n");
    out.push_str(RULE);
    out.push('\n');
    for item in items.iter().take(num) {
        item.write_jvm(out);
        out.push('\n');
    }
    if items.len() > num {
        out.push_str("...\n");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "-------------------------------------------\nTime: 2000 ms\n-------------------------------------------\n";

    #[test]
    fn empty_batch_prints_header_and_blank_line() {
        let mut s = String::new();
        write_batch::<i64>(&mut s, Time(2000), &[], 10);
        assert_eq!(s, format!("{HEADER}\n"));
        assert_eq!(RULE.len(), 43);
    }

    #[test]
    fn exactly_num_elements_has_no_ellipsis() {
        let mut s = String::new();
        write_batch(&mut s, Time(2000), &[("a", 1.0), ("b", 2.5)], 2);
        assert_eq!(s, format!("{HEADER}(a,1.0)\n(b,2.5)\n\n"));
    }

    #[test]
    fn num_plus_one_elements_prints_ellipsis() {
        let mut s = String::new();
        write_batch(&mut s, Time(2000), &[1i64, 2, 3], 2);
        assert_eq!(s, format!("{HEADER}1\n2\n...\n\n"));
    }
}
