//! Plain-text columns for the CLI's tables: each column as wide as its widest cell plus two
//! spaces, left or right aligned, trailing spaces trimmed. The caller hands the rows over
//! twice (once to measure, once to write), so a table of 100,000 backends is never held as
//! cells: a table crate's cell objects more than doubled `vsteer plan`'s peak memory at
//! 30,000 services.

/// How a column's cells sit in its width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// The widths of `N` columns, learnt from the rows [`Columns::measure`] sees.
#[derive(Debug, Clone)]
pub struct Columns<const N: usize> {
    align: [Align; N],
    widths: [usize; N],
}

/// Between a cell and the next column.
const GAP: usize = 2;

impl<const N: usize> Columns<N> {
    pub fn new(align: [Align; N]) -> Self {
        Columns {
            align,
            widths: [0; N],
        }
    }

    /// Widens the columns to fit `row`.
    pub fn measure<S: AsRef<str>>(&mut self, row: &[S; N]) {
        for (width, cell) in self.widths.iter_mut().zip(row) {
            *width = (*width).max(cell.as_ref().chars().count());
        }
    }

    /// Appends `row` to `out`, aligned, without trailing spaces or a line end.
    pub fn write<S: AsRef<str>>(&self, out: &mut String, row: &[S; N]) {
        let start = out.len();
        for ((cell, width), align) in row.iter().zip(self.widths).zip(self.align) {
            let cell = cell.as_ref();
            let pad = width.saturating_sub(cell.chars().count());
            if align == Align::Right {
                out.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(cell);
            if align == Align::Left {
                out.extend(std::iter::repeat_n(' ', pad));
            }
            out.extend(std::iter::repeat_n(' ', GAP));
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_the_widest_cell_and_trailing_spaces_go() {
        let rows = [["a", "1", "x"], ["long", "100", ""]];
        let mut columns = Columns::new([Align::Left, Align::Right, Align::Left]);
        for row in &rows {
            columns.measure(row);
        }
        let mut out = String::new();
        for row in &rows {
            columns.write(&mut out, row);
            out.push('\n');
        }
        assert_eq!(out, "a       1  x\nlong  100\n");
    }
}
