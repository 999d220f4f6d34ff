//! The one output sanitiser: every human-readable output (the `status`
//! report and plugin, `validate`, log lines that quote objects) passes text
//! that came from an object, a file or a server through [`escape`], so that
//! no object author can write to the reader's terminal: no escape sequence
//! (OSC 52 clipboard writes, cursor moves, title changes), no C1 control, no
//! bidi override that reorders what is shown (Trojan Source), no invisible
//! character that makes two names look alike.
//!
//! A character that is not safe is shown as `\u{…}` (its code point in
//! hex), and a backslash as `\\`, so that the escaped text cannot be
//! mistaken for an object's real text: the escaping is reversible.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as is: C0 controls (including tab
/// and newline: a field never spans lines), DEL, C1 controls, bidi
/// controls, invisible format characters and line/paragraph separators.
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        // Bidi: ALM, LRM, RLM, embeddings and overrides, isolates.
        | '\u{61c}' | '\u{200e}' | '\u{200f}'
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        // Zero-width and other invisible format characters.
        | '\u{ad}' | '\u{180e}' | '\u{200b}'..='\u{200d}' | '\u{2060}'..='\u{2064}'
        | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
        // Line and paragraph separators.
        | '\u{2028}' | '\u{2029}'
        // Tag characters (invisible ASCII look-alikes).
        | '\u{e0000}'..='\u{e007f}'
    )
}

/// `text` with every unsafe character shown escaped (`\u{1b}`) and every
/// backslash doubled; `text` itself when it has neither.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c == '\\' || is_unsafe(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// [`escape`] for a multi-line text (a report, a list of problems): each
/// line is escaped, the newlines between lines are kept.
pub fn escape_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&escape(line));
    }
    out
}

/// A rendered report, coloured by its own palette, made safe: every
/// unsafe character but the newline is escaped, except a colour sequence
/// (`ESC [ digits;… m`, SGR), which only changes colours. The fields of a
/// report are escaped before it is rendered; this is the net behind them.
pub fn escape_report(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '\u{1b}' {
            let sgr_len = rest[1..].strip_prefix('[').and_then(|after| {
                let digits = after
                    .find(|d: char| !(d.is_ascii_digit() || d == ';'))
                    .unwrap_or(after.len());
                (after[digits..].starts_with('m')).then_some(1 + 1 + digits + 1)
            });
            if let Some(len) = sgr_len {
                out.push_str(&rest[..len]);
                rest = &rest[len..];
                continue;
            }
        }
        if c == '\n' || !is_unsafe(c) {
            out.push(c);
        } else {
            push_escaped(&mut out, c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    if c == '\\' {
        out.push_str("\\\\");
    } else if is_unsafe(c) {
        out.push_str(&format!("\\u{{{:x}}}", c as u32));
    } else {
        out.push(c);
    }
}

/// A JSON text in which the characters a terminal would act on but JSON
/// leaves raw (DEL, C1, bidi and the other unsafe ones above U+001F) are
/// written as `\uXXXX` escapes: the same JSON value, safe to print.
pub fn json_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if is_unsafe(c) && c != '\n' {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Escapes every string (and key) of a JSON value in place, so that an
/// object can be rendered for people by code that prints its fields.
pub fn escape_value(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if let Cow::Owned(escaped) = escape(s) {
                *s = escaped;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(escape_value),
        Value::Object(fields) => {
            let needs_key_escape = fields.keys().any(|k| matches!(escape(k), Cow::Owned(_)));
            if needs_key_escape {
                let old = std::mem::take(fields);
                for (k, mut v) in old {
                    escape_value(&mut v);
                    fields.insert(escape(&k).into_owned(), v);
                }
            } else {
                fields.values_mut().for_each(escape_value);
            }
        }
        _ => {}
    }
}

/// A copy of `object` with every string escaped (see [`escape_value`]);
/// `object` itself when it cannot round-trip through JSON.
pub fn escaped<T>(object: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone,
{
    let Ok(mut value) = serde_json::to_value(object) else {
        return object.clone();
    };
    escape_value(&mut value);
    serde_json::from_value(value).unwrap_or_else(|_| object.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_c1_bidi_and_invisibles_are_escaped() {
        assert_eq!(escape("plain text: ok"), "plain text: ok");
        assert_eq!(
            escape("https://x.example/\u{1b}]52;c;ZWNobyBoaQ==\u{7}"),
            "https://x.example/\\u{1b}]52;c;ZWNobyBoaQ==\\u{7}"
        );
        assert_eq!(escape("a\u{9b}31mb"), "a\\u{9b}31mb");
        assert_eq!(escape("admin\u{202e}txt.exe"), "admin\\u{202e}txt.exe");
        assert_eq!(escape("x\u{2067}y\u{200b}z"), "x\\u{2067}y\\u{200b}z");
        assert_eq!(
            escape("line\nbreak\ttab\r"),
            "line\\u{a}break\\u{9}tab\\u{d}"
        );
        // Reversible: a real backslash cannot pose as an escape.
        assert_eq!(escape("\\u{1b}"), "\\\\u{1b}");
        assert_eq!(escape("café ☎ 電話"), "café ☎ 電話");
    }

    #[test]
    fn json_keeps_its_value_and_loses_raw_controls() {
        let value = serde_json::json!({"name": "a\u{1b}[2J\u{9b}\u{202e}b", "\u{85}k": 1});
        let text = json_safe(&serde_json::to_string_pretty(&value).unwrap());
        assert!(!text.chars().any(|c| is_unsafe(c) && c != '\n'), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn a_report_keeps_its_colours_and_newlines_only() {
        let text = "\u{1b}[1mName\u{1b}[0m x\u{1b}]52;c;aGk=\u{7}\n\u{1b}[2J\u{9b}31m\u{202e}";
        assert_eq!(
            escape_report(text),
            "\u{1b}[1mName\u{1b}[0m x\\u{1b}]52;c;aGk=\\u{7}\n\\u{1b}[2J\\u{9b}31m\\u{202e}"
        );
    }

    #[test]
    fn values_are_escaped_everywhere() {
        let mut value = serde_json::json!({"a": ["\u{1b}x"], "k\u{7}": {"m": "\u{2066}"}});
        escape_value(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"a": ["\\u{1b}x"], "k\\u{7}": {"m": "\\u{2066}"}})
        );
    }
}
