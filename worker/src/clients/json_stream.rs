//! Items of one array in a JSON document read as a stream of chunks: `{"tasks": [{…}, {…}]}`
//! yields each task's bytes as soon as it is complete, so a 20,000-task answer never sits in
//! memory at once (only the current item and the current chunk do).
/// Splits the array under a top-level key into its items.
pub struct ArrayItems {
    key: Vec<u8>,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// The string being read at depth 1 (a key candidate) and the last one completed.
    current: Vec<u8>,
    last_key: Vec<u8>,
    after_colon: bool,
    state: State,
    item: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Seeking,
    InArray,
    InItem,
    Done,
}

/// Items longer than this are refused (a provider gone wrong must not eat the memory).
pub const MAX_ITEM: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("an array item exceeds {MAX_ITEM} bytes")]
pub struct ItemTooLarge;

impl ArrayItems {
    pub fn new(key: &str) -> Self {
        Self {
            key: key.as_bytes().to_vec(),
            depth: 0,
            in_string: false,
            escaped: false,
            current: Vec::new(),
            last_key: Vec::new(),
            after_colon: false,
            state: State::Seeking,
            item: Vec::new(),
        }
    }

    /// Whether the array was found and closed.
    pub fn finished(&self) -> bool {
        self.state == State::Done
    }

    /// Reads a chunk; completed items are appended to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), ItemTooLarge> {
        for &b in chunk {
            if self.state == State::Done {
                break;
            }
            if self.state == State::InItem {
                self.item.push(b);
                if self.item.len() > MAX_ITEM {
                    return Err(ItemTooLarge);
                }
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    if self.state == State::Seeking && self.depth == 1 {
                        self.last_key = std::mem::take(&mut self.current);
                    }
                    if self.state == State::InItem && self.depth == 2 {
                        self.finish_item(out);
                    }
                } else if self.state == State::Seeking
                    && self.depth == 1
                    && self.current.len() <= self.key.len()
                {
                    // Only as much as can still equal the key: a long string at the top level
                    // (a value, not the key) costs no memory.
                    self.current.push(b);
                }
                continue;
            }
            match b {
                b'"' => {
                    if self.state == State::InArray {
                        self.state = State::InItem;
                        self.item.push(b);
                    }
                    self.in_string = true;
                    self.current.clear();
                }
                b':' if self.state == State::Seeking && self.depth == 1 => self.after_colon = true,
                b'{' | b'[' => {
                    if self.state == State::Seeking
                        && b == b'['
                        && self.depth == 1
                        && self.after_colon
                        && self.last_key == self.key
                    {
                        self.depth += 1;
                        self.state = State::InArray;
                        continue;
                    }
                    if self.state == State::InArray {
                        self.state = State::InItem;
                        self.item.push(b);
                    }
                    self.depth += 1;
                }
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.state == State::InArray && self.depth == 1 {
                        self.state = State::Done;
                    } else if self.state == State::InItem && self.depth == 2 {
                        self.finish_item(out);
                    } else if self.state == State::InItem && self.depth == 1 {
                        // A scalar last item ends at the array's close.
                        self.item.pop();
                        self.finish_item(out);
                        self.state = State::Done;
                    }
                }
                b',' => {
                    if self.state == State::Seeking && self.depth == 1 {
                        self.after_colon = false;
                    }
                    if self.state == State::InItem && self.depth == 2 {
                        // A scalar item (number, literal) ends at the comma.
                        self.item.pop();
                        self.finish_item(out);
                    }
                }
                b' ' | b'\n' | b'\r' | b'\t' => {}
                _ => {
                    if self.state == State::InArray {
                        self.state = State::InItem;
                        self.item.push(b);
                    }
                }
            }
        }
        Ok(())
    }

    fn finish_item(&mut self, out: &mut Vec<Vec<u8>>) {
        out.push(std::mem::take(&mut self.item));
        self.state = State::InArray;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_whole_whatever_the_chunk_boundaries() {
        let doc = br#" {"meta": {"tasks": [9]}, "tasks" : [ {"id": 1, "text": "a ] } \" [ {", "f": [1, {"x": []}]},
            {"id": 2, "s": "\\"}, {"id":3} ], "after": [1,2]}"#;
        let expected: Vec<serde_json::Value> = vec![
            serde_json::json!({"id": 1, "text": "a ] } \" [ {", "f": [1, {"x": []}]}),
            serde_json::json!({"id": 2, "s": "\\"}),
            serde_json::json!({"id": 3}),
        ];
        for size in 1..doc.len() {
            let mut items = ArrayItems::new("tasks");
            let mut out = Vec::new();
            for chunk in doc.chunks(size) {
                items.feed(chunk, &mut out).unwrap();
            }
            let parsed: Vec<serde_json::Value> = out
                .iter()
                .map(|b| serde_json::from_slice(b).unwrap())
                .collect();
            assert_eq!(parsed, expected, "chunk size {size}");
            assert!(items.finished());
        }
        let mut items = ArrayItems::new("tasks");
        let mut out = Vec::new();
        items.feed(br#"{"tasks": []}"#, &mut out).unwrap();
        assert!(out.is_empty() && items.finished());
    }
}
