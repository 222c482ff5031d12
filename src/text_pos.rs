//! Positions in source text (`file:line:column`) for the errors of config and rules files.

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).line_col(offset)
}

/// Line starts of a text, for many offset -> (line, column) look-ups (rules files name the line
/// of every rule) in O(log n) each instead of a rescan.
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> LineIndex<'a> {
        let starts = std::iter::once(0)
            .chain(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    /// 1-based line and column (in characters) of byte `offset` (clamped to the text).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|s| *s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |l| l.chars().count())
            + 1;
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::LineIndex;

    #[test]
    fn line_index_positions() {
        let text = "a\nbé\n\nlast";
        let idx = LineIndex::new(text);
        for (offset, want) in [
            (0, (1, 1)),
            (1, (1, 2)),
            (2, (2, 1)),
            (3, (2, 2)),
            (5, (2, 3)),
            (6, (3, 1)),
            (7, (4, 1)),
            (11, (4, 5)),
            (99, (4, 5)),
        ] {
            assert_eq!(idx.line_col(offset), want, "offset {offset}");
        }
    }
}
