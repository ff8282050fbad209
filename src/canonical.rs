//! RFC 8785 (JCS) canonical JSON: object members sorted by their UTF-16 code units, no
//! whitespace, strings escaped as ECMAScript's `JSON.stringify` does, numbers in their shortest
//! ECMAScript form. The log's leaves and the model manifest are hashed in this form.
use serde_json::Value;

/// Why a value has no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A number that is not finite, or a float outside what JCS can represent exactly here.
    #[error("number {0} has no canonical JSON form")]
    Number(String),
}

/// The canonical JSON text of `value`.
pub fn to_canonical_string(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_value(value, &mut out)?;
    Ok(out)
}

/// The canonical JSON bytes of a serializable value.
pub fn to_canonical_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let value = serde_json::to_value(value).map_err(|e| CanonicalError::Number(e.to_string()))?;
    to_canonical_string(&value).map(String::into_bytes)
}

fn write_value(value: &Value, out: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(map.iter(), out)?,
    }
    Ok(())
}

/// The canonical JSON text of an object with these members.
pub fn canonical_object<'a>(
    members: impl IntoIterator<Item = (&'a String, &'a Value)>,
) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_object(members, &mut out)?;
    Ok(out)
}

fn write_object<'a>(
    members: impl IntoIterator<Item = (&'a String, &'a Value)>,
    out: &mut String,
) -> Result<(), CanonicalError> {
    let mut members: Vec<(&String, &Value)> = members.into_iter().collect();
    members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    out.push('{');
    for (i, (key, item)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(key, out);
        out.push(':');
        write_value(item, out)?;
    }
    out.push('}');
    Ok(())
}

/// The largest integer every IEEE double represents exactly (2^53).
const MAX_EXACT_INTEGER: u64 = 1 << 53;

fn write_number(number: &serde_json::Number, out: &mut String) -> Result<(), CanonicalError> {
    // RFC 8785 serializes numbers as ECMAScript does doubles: integers up to 2^53 exactly,
    // larger ones as the double they round to.
    if let Some(i) = number.as_i64()
        && i.unsigned_abs() <= MAX_EXACT_INTEGER
    {
        out.push_str(&i.to_string());
        return Ok(());
    }
    if let Some(u) = number.as_u64()
        && u <= MAX_EXACT_INTEGER
    {
        out.push_str(&u.to_string());
        return Ok(());
    }
    let Some(f) = number.as_f64().filter(|f| f.is_finite()) else {
        return Err(CanonicalError::Number(number.to_string()));
    };
    if f == 0.0 {
        // ECMAScript prints -0 as 0.
        out.push('0');
        return Ok(());
    }
    // Rust's `Display` gives the shortest digits that round-trip, without an exponent, padded
    // with zeros: ECMAScript's form for 1e-6 <= |f| < 1e21. Outside that range ECMAScript
    // switches to exponent notation, which is refused rather than guessed.
    if f.abs() >= 1e21 || f.abs() < 1e-6 {
        return Err(CanonicalError::Number(f.to_string()));
    }
    out.push_str(&f.to_string());
    Ok(())
}

fn write_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_members_and_drops_whitespace() {
        let value = json!({"b": [1, true, null], "a": {"d": "x", "c": -2}});
        assert_eq!(
            to_canonical_string(&value).expect("ok"),
            r#"{"a":{"c":-2,"d":"x"},"b":[1,true,null]}"#
        );
    }

    /// RFC 8785 §3.2.3's sorting example: keys compared as UTF-16 code units.
    #[test]
    fn sorts_by_utf16_code_units() {
        let value = json!({
            "\u{20ac}": "Euro Sign",
            "\r": "Carriage Return",
            "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\u{1f600}": "Emoji: Grinning Face",
            "\u{0080}": "Control",
            "\u{00f6}": "Latin Small Letter O With Diaeresis"
        });
        let text = to_canonical_string(&value).expect("ok");
        let order: Vec<&str> = [
            "\\r",
            "1",
            "\u{0080}",
            "\u{00f6}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
        ]
        .to_vec();
        let mut last = 0;
        for key in order {
            let at = text.find(&format!("\"{key}\"")).expect("key present");
            assert!(at >= last, "{key} out of order in {text}");
            last = at;
        }
    }

    #[test]
    fn escapes_like_json_stringify() {
        let value = json!("a\"b\\c\n\u{1}\u{1f}é\u{2028}/");
        assert_eq!(
            to_canonical_string(&value).expect("ok"),
            "\"a\\\"b\\\\c\\n\\u0001\\u001fé\u{2028}/\""
        );
    }

    #[test]
    fn numbers_in_ecmascript_form() {
        assert_eq!(
            to_canonical_string(&json!([0, -1, 1.5, 100.0, 0.001])).expect("ok"),
            "[0,-1,1.5,100,0.001]"
        );
        assert!(to_canonical_string(&json!(1e300)).is_err());
    }

    #[test]
    fn integers_past_2_pow_53_are_the_doubles_they_round_to() {
        // As ECMAScript's `String(2 ** 60)` and RFC 8785 have it.
        assert_eq!(
            to_canonical_string(&json!(1u64 << 60)).expect("ok"),
            "1152921504606847000"
        );
        assert_eq!(
            to_canonical_string(&json!(9_007_199_254_740_993u64)).expect("ok"),
            "9007199254740992"
        );
        assert_eq!(
            to_canonical_string(&json!(-9_007_199_254_740_993i64)).expect("ok"),
            "-9007199254740992"
        );
        assert_eq!(
            to_canonical_string(&json!(9_007_199_254_740_992u64)).expect("ok"),
            "9007199254740992"
        );
        assert_eq!(to_canonical_string(&json!(-0.0)).expect("ok"), "0");
    }

    proptest::proptest! {
        /// Agrees with an independent RFC 8785 implementation (serde_jcs) on every number it
        /// accepts, integers of any size and doubles in the plain-notation range.
        #[test]
        fn numbers_agree_with_serde_jcs(i in proptest::num::i64::ANY, u in proptest::num::u64::ANY, f in -1e20f64..1e20f64) {
            for value in [json!(i), json!(u), json!(f)] {
                if let Ok(ours) = to_canonical_string(&value) {
                    let theirs = serde_jcs::to_string(&value).expect("serde_jcs");
                    proptest::prop_assert_eq!(ours, theirs);
                }
            }
        }

        /// And on objects with any keys and string values (member order, escapes).
        #[test]
        fn objects_agree_with_serde_jcs(entries in proptest::collection::btree_map(".{0,8}", ".{0,12}", 0..8)) {
            let value = serde_json::to_value(&entries).expect("value");
            let ours = to_canonical_string(&value).expect("ours");
            let theirs = serde_jcs::to_string(&value).expect("serde_jcs");
            proptest::prop_assert_eq!(ours, theirs);
        }
    }
}
