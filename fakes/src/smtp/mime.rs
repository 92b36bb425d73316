//! Just enough MIME to show a received message in the request log: headers (unfolded, with
//! RFC 2047 words decoded for Subject), and the text body decoded from base64/quoted-printable,
//! picking `text/plain` (else `text/html`) out of multipart messages. UTF-8 is assumed.

use serde_json::{json, Map, Value};

pub struct Part {
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Part {
    pub fn parse(raw: &str) -> Self {
        let (head, body) = match raw.find("\r\n\r\n") {
            Some(i) => (&raw[..i], &raw[i + 4..]),
            None => match raw.find("\n\n") {
                Some(i) => (&raw[..i], &raw[i + 2..]),
                None => (raw, ""),
            },
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                // A folded continuation of the previous header.
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        Self {
            headers,
            body: body.to_string(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_type(&self) -> String {
        self.header("Content-Type")
            .unwrap_or("text/plain")
            .to_ascii_lowercase()
    }

    /// The readable text of this part: decoded, and for multiparts the best text sub-part.
    pub fn text(&self) -> String {
        let content_type = self.content_type();
        if content_type.starts_with("multipart/") {
            let Some(boundary) = parameter(self.header("Content-Type").unwrap_or(""), "boundary")
            else {
                return self.body.clone();
            };
            let delimiter = format!("--{boundary}");
            let parts: Vec<Part> = self
                .body
                .split(delimiter.as_str())
                .skip(1)
                .take_while(|p| !p.starts_with("--"))
                .map(|p| Part::parse(p.trim_start_matches(['\r', '\n'])))
                .collect();
            let pick = parts
                .iter()
                .find(|p| p.content_type().starts_with("text/plain"))
                .or_else(|| parts.iter().find(|p| p.content_type().starts_with("text/")))
                .or_else(|| parts.first());
            return pick.map(Part::text).unwrap_or_default();
        }
        let encoding = self
            .header("Content-Transfer-Encoding")
            .unwrap_or("7bit")
            .to_ascii_lowercase();
        let bytes = match encoding.as_str() {
            "base64" => base64(&self.body),
            "quoted-printable" => quoted_printable(&self.body),
            _ => self.body.clone().into_bytes(),
        };
        String::from_utf8_lossy(&bytes).trim_end().to_string()
    }
}

/// `boundary="abc"` out of a Content-Type value.
fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn base64(input: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in input.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn hex(b: Option<&u8>) -> Option<u8> {
    b.and_then(|b| (*b as char).to_digit(16)).map(|d| d as u8)
}

fn quoted_printable(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            match (bytes.get(i + 1), bytes.get(i + 2)) {
                // Soft line break.
                (Some(b'\r'), Some(b'\n')) => i += 3,
                (Some(b'\n'), _) => i += 2,
                _ => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 3;
                    }
                    _ => {
                        out.push(b'=');
                        i += 1;
                    }
                },
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?UTF-8?Q?...?=`) in a header value.
pub fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let decoded = rest[start + 2..].splitn(3, '?').collect::<Vec<_>>();
        let word = match decoded.as_slice() {
            [charset, encoding, tail] => tail.find("?=").map(|end| {
                let text = &tail[..end];
                let bytes = if encoding.eq_ignore_ascii_case("b") {
                    base64(text)
                } else {
                    quoted_printable(&text.replace('_', " "))
                };
                let consumed = start + 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
                (String::from_utf8_lossy(&bytes).into_owned(), consumed)
            }),
            _ => None,
        };
        let Some((text, consumed)) = word else {
            break;
        };
        let between = &rest[..start];
        // Whitespace between two encoded words is not part of the text.
        if !(last_was_word && between.trim().is_empty()) {
            out.push_str(between);
        }
        out.push_str(&text);
        rest = &rest[consumed..];
        last_was_word = true;
    }
    out.push_str(rest);
    out
}

/// The log body of a received message.
pub fn describe(from: &str, to: &[String], raw: &str) -> Value {
    let part = Part::parse(raw);
    let mut headers = Map::new();
    for (name, value) in &part.headers {
        // The first occurrence wins (Received headers repeat; the rest do not).
        headers
            .entry(name.clone())
            .or_insert_with(|| Value::String(value.clone()));
    }
    json!({
        "from": from,
        "to": to,
        "message_id": part.header("Message-ID"),
        "subject": part.header("Subject").map(decode_words),
        "headers": headers,
        "text": part.text(),
        "data": raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_subjects_and_base64_bodies_are_decoded() {
        let raw = "From: a@b.ru\r\nSubject: =?utf-8?b?0J/RgNC40LLQtdGC?=\r\n =?utf-8?b?INC80LjRgA==?=\r\n\
                   Message-ID: <1@b.ru>\r\nContent-Transfer-Encoding: base64\r\n\r\n0J/RgNC40LLQtdGC\r\n";
        let v = describe("a@b.ru", &["c@d.ru".to_string()], raw);
        assert_eq!(v["subject"], "Привет мир");
        assert_eq!(v["message_id"], "<1@b.ru>");
        assert_eq!(v["text"], "Привет");
    }

    #[test]
    fn multipart_picks_the_plain_text_part() {
        let raw = "Content-Type: multipart/alternative; boundary=\"XX\"\r\n\r\n--XX\r\n\
                   Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                   =D0=94=D0=B0 =\r\nok\r\n--XX\r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n--XX--\r\n";
        assert_eq!(Part::parse(raw).text(), "Да ok");
    }
}
