//! Log lines safe for a terminal. A logged value may quote an object (a
//! problem with its spec, the API server's message about it), so an object
//! author could otherwise write escape sequences, C1 controls, bidi
//! overrides or a fake second line into an operator's terminal or log
//! viewer. Every line passes the one output sanitiser on its way out; the
//! formatter's own colours stay.

use std::io;

use tracing_subscriber::fmt::MakeWriter;

use crate::core::printable;

/// Wraps a writer maker so that every log line it writes is made safe:
/// human lines through [`printable::escape_report`] (newlines inside a
/// line escaped too), JSON lines through [`printable::json_safe`].
pub struct SafeLines<M> {
    inner: M,
    json: bool,
}

impl<M> SafeLines<M> {
    pub fn human(inner: M) -> Self {
        Self { inner, json: false }
    }

    pub fn json(inner: M) -> Self {
        Self { inner, json: true }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for SafeLines<M> {
    type Writer = SafeWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        SafeWriter {
            inner: self.inner.make_writer(),
            json: self.json,
        }
    }
}

/// See [`SafeLines`]. The formatter writes each event whole, in one call.
pub struct SafeWriter<W> {
    inner: W,
    json: bool,
}

impl<W: io::Write> io::Write for SafeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let safe = safe_line(&text, self.json);
        self.inner.write_all(safe.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One formatted event made safe; only its final newline stays a newline.
fn safe_line(text: &str, json: bool) -> String {
    let (body, end) = match text.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (text, ""),
    };
    let safe = if json {
        printable::json_safe(body)
    } else {
        printable::escape_report(body)
    };
    // A newline inside one event would start a line that looks like another.
    format!("{}{end}", safe.replace('\n', "\\u{a}"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_quoted_object_cannot_reach_the_terminal_but_colours_stay() {
        let line = "\u{1b}[33mWARN\u{1b}[0m cannot read object: \"https://x/\u{1b}]52;c;aGk=\u{7}\" \u{9b}2J a\u{202e}b\nINFO forged line\n";
        assert_eq!(
            safe_line(line, false),
            "\u{1b}[33mWARN\u{1b}[0m cannot read object: \"https://x/\\u{1b}]52;c;aGk=\\u{7}\" \\u{9b}2J a\\u{202e}b\\u{a}INFO forged line\n"
        );
    }

    #[test]
    fn json_lines_stay_json_with_the_same_values() {
        let line = "{\"problem\":\"a\u{202e}b \u{85}\"}\n";
        let safe = safe_line(line, true);
        assert_eq!(safe, "{\"problem\":\"a\\u202eb \\u0085\"}\n");
        let value: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(value["problem"], "a\u{202e}b \u{85}");
    }

    #[test]
    fn the_writer_passes_each_event_through() {
        let made = SafeLines::human(Vec::new);
        let mut writer = made.make_writer();
        writer.write_all(b"INFO x\x1b[2J\n").unwrap();
        assert_eq!(writer.inner, b"INFO x\\u{1b}[2J\n");
    }
}
