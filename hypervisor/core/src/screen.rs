//! The screen console's terminal (DESIGN.md §13): a grid of text cells that the hypervisor's
//! log and dom0's terminal output are written into, and the drawing of a cell on a pixel
//! framebuffer with a built-in font.
//!
//! The grid is a shadow of the screen: writing changes cells in memory only, and
//! [`Terminal::flush`] draws the cells that differ from what the screen shows. Scrolling is
//! then a move of the grid in memory, and what reaches the screen (video memory, slow to
//! write and often uncached) is only the cells that really changed.
//!
//! dom0's output is a terminal's (a line editor's echo, prompts, escape sequences): the
//! control characters and the ECMA-48 sequences a line editor and a shell use are carried
//! out (CR, LF, BS, TAB, `ESC [ K`, `ESC [ J`, cursor moves and positions, SGR colours); every
//! other sequence is read to its end and dropped, so nothing of it shows as garbage. Text is
//! ASCII: any other character shows as `?`.
//!
//! The font is `noto-sans-mono-bitmap` (regular, 16 pixels high); the scenario harness draws
//! the expected text with [`cell_pixel`] to compare a screenshot against it.

use alloc::vec::Vec;

use noto_sans_mono_bitmap::{FontWeight, RasterHeight, get_raster, get_raster_width};

/// The font: weight and height.
const WEIGHT: FontWeight = FontWeight::Regular;
const HEIGHT: RasterHeight = RasterHeight::Size16;

/// A text cell's size on a framebuffer, in pixels.
pub const CELL_WIDTH: usize = get_raster_width(WEIGHT, HEIGHT);
/// See [`CELL_WIDTH`].
pub const CELL_HEIGHT: usize = HEIGHT.val();

/// VGA's 16 colours (the text-mode attribute's nibbles), as 0xRRGGBB.
pub const PALETTE: [u32; 16] = [
    0x000000, 0x0000AA, 0x00AA00, 0x00AAAA, 0xAA0000, 0xAA00AA, 0xAA5500, 0xAAAAAA, 0x555555,
    0x5555FF, 0x55FF55, 0x55FFFF, 0xFF5555, 0xFF55FF, 0xFFFF55, 0xFFFFFF,
];

/// Attribute of ordinary text: light grey on black (VGA's default).
pub const ATTR_NORMAL: u8 = 0x07;
/// Attribute of the hypervisor's warnings: yellow on black.
pub const ATTR_WARNING: u8 = 0x0E;
/// Attribute of the hypervisor's errors: light red on black.
pub const ATTR_ERROR: u8 = 0x0C;
/// Attribute of the hypervisor's debug and trace lines: dark grey on black.
pub const ATTR_DEBUG: u8 = 0x08;

/// ECMA-48 colour numbers (SGR 30–37) to VGA colour numbers.
const ANSI_TO_VGA: [u8; 8] = [0, 4, 2, 6, 1, 5, 3, 7];

/// One text cell: an ASCII character and a VGA attribute (foreground in the low nibble,
/// background in bits 4–6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    /// The character, printable ASCII.
    pub ch: u8,
    /// The VGA attribute.
    pub attr: u8,
}

impl Cell {
    /// An empty cell in the default colours.
    pub const BLANK: Cell = Cell {
        ch: b' ',
        attr: ATTR_NORMAL,
    };

    /// The same cell with foreground and background swapped (the cursor).
    const fn inverted(self) -> Cell {
        Cell {
            ch: self.ch,
            attr: ((self.attr & 0x07) << 4) | ((self.attr >> 4) & 0x07),
        }
    }
}

/// Where cells are drawn: VGA text memory or a pixel framebuffer (the hypervisor's
/// `arch` code, which owns the mapping).
pub trait Surface {
    /// Draws `cell` at column `col`, row `row` (both within the terminal's size).
    fn draw(&mut self, col: usize, row: usize, cell: Cell);

    /// Moves everything up by `rows` rows (fewer than the screen has), if the surface can do
    /// that faster than redrawing it (VGA text memory: one block copy); the rows left at the
    /// bottom are drawn afterwards. `false`: cannot; the terminal redraws instead.
    fn scroll_up(&mut self, rows: usize) -> bool {
        let _ = rows;
        false
    }
}

/// Where the escape-sequence reader is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Plain text.
    Ground,
    /// After ESC.
    Escape,
    /// After `ESC` and an intermediate byte (`ESC ( B`): one more byte ends it.
    EscapeIntermediate,
    /// In a control sequence (`ESC [`): parameters until a final byte.
    Csi,
    /// In an operating-system command or string (`ESC ]`, `ESC P`, ...): until BEL or `ESC \`.
    String,
    /// In a string, after ESC.
    StringEscape,
}

/// At most this many parameters of a control sequence are kept; later ones are read and
/// dropped.
const MAX_PARAMS: usize = 8;

/// The text grid, the cursor and the escape-sequence reader.
pub struct Terminal {
    cols: usize,
    rows: usize,
    /// What the screen should show, row by row.
    cells: Vec<Cell>,
    /// What the screen shows (`None`: unknown, to be drawn).
    shown: Vec<Option<Cell>>,
    col: usize,
    row: usize,
    /// Where the cursor was last drawn.
    shown_cursor: Option<(usize, usize)>,
    /// Cells changed since the last flush: `dirty.0..dirty.1` (empty when `.0 >= .1`), so
    /// that a flush after a character or a line looks at those cells only.
    dirty: (usize, usize),
    /// Rows scrolled since the last flush, which the surface has not been told of.
    scrolled: usize,
    /// Rows moved up at once when the cursor passes the last row.
    scroll_step: usize,
    /// The colours dom0's SGR sequences chose.
    pen: u8,
    state: State,
    params: [u16; MAX_PARAMS],
    nparams: usize,
    /// A `?` or other private marker was seen in this control sequence.
    private: bool,
    /// UTF-8 continuation bytes still to skip.
    skip: u8,
}

impl Terminal {
    /// A blank terminal of `cols` x `rows` cells that scrolls `scroll_step` rows at a time
    /// (more than one where redrawing is slow: a framebuffer). `None` for a zero size or
    /// when memory is short (the console then goes without a screen).
    pub fn new(cols: usize, rows: usize, scroll_step: usize) -> Option<Terminal> {
        if cols == 0 || rows == 0 {
            return None;
        }
        let n = cols.checked_mul(rows)?;
        let mut cells = Vec::new();
        cells.try_reserve_exact(n).ok()?;
        cells.resize(n, Cell::BLANK); // alloc: none: reserved just above
        let mut shown = Vec::new();
        shown.try_reserve_exact(n).ok()?;
        shown.resize(n, None); // alloc: none: reserved just above
        Some(Terminal {
            cols,
            rows,
            cells,
            shown,
            col: 0,
            row: 0,
            shown_cursor: None,
            dirty: (0, n),
            scrolled: 0,
            scroll_step: scroll_step.clamp(1, rows),
            pen: ATTR_NORMAL,
            state: State::Ground,
            params: [0; MAX_PARAMS],
            nparams: 0,
            private: false,
            skip: 0,
        })
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The cursor: (column, row).
    pub fn cursor(&self) -> (usize, usize) {
        (self.col.min(self.cols - 1), self.row)
    }

    /// Row `row`'s text, trailing blanks removed (for tests and diagnostics).
    pub fn row_text(&self, row: usize) -> alloc::string::String {
        let start = row * self.cols;
        let text: alloc::string::String = self.cells[start..start + self.cols]
            .iter()
            .map(|c| char::from(c.ch))
            .collect();
        alloc::string::String::from(text.trim_end())
    }

    /// The cell at (`col`, `row`).
    pub fn cell(&self, col: usize, row: usize) -> Cell {
        self.cells[row * self.cols + col]
    }

    /// Writes lines of the hypervisor's log in colour `attr`: `\n` ends a line, other
    /// control characters show as `?` (the log's text was made printable already; this is
    /// a second guard).
    pub fn write_log(&mut self, text: &[u8], attr: u8) {
        for &b in text {
            match b {
                b'\n' => self.newline(),
                b'\r' => self.col = 0,
                _ => {
                    if let Some(ch) = self.printable(b) {
                        self.put(ch, attr);
                    }
                }
            }
        }
    }

    /// Writes a terminal's output (dom0's console), carrying out the control characters and
    /// escape sequences it knows and dropping the rest.
    pub fn write_terminal(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.feed(b);
        }
    }

    /// Draws on `surface` every cell that changed since the last flush, and the cursor.
    pub fn flush(&mut self, surface: &mut impl Surface) {
        let n = self.cells.len();
        if self.scrolled > 0 {
            let k = self.scrolled;
            self.scrolled = 0;
            if k < self.rows && surface.scroll_up(k) {
                // What the screen shows moved with it; the rows it left are to be drawn.
                self.shown.copy_within(k * self.cols.., 0);
                self.shown[n - k * self.cols..].fill(None);
                self.shown_cursor = self
                    .shown_cursor
                    .and_then(|(c, r)| Some((c, r.checked_sub(k)?)));
            } else {
                self.dirty = (0, n);
            }
        }
        let cursor = self.cursor();
        let cursor_index = cursor.1 * self.cols + cursor.0;
        let (mut from, mut to) = self.dirty;
        let mut include = |i: usize| {
            from = from.min(i);
            to = to.max(i + 1);
        };
        if let Some((c, r)) = self.shown_cursor
            && (c, r) != cursor
        {
            // The old cursor's cell is drawn again plainly below.
            let old = r * self.cols + c;
            self.shown[old] = None;
            include(old);
        }
        include(cursor_index);
        let to = to.min(self.cells.len());
        self.dirty = (self.cells.len(), 0);
        let cells = self.cells.iter().zip(self.shown.iter_mut()).enumerate();
        for (i, (want, shown)) in cells.skip(from).take(to.saturating_sub(from)) {
            let want = if i == cursor_index {
                want.inverted()
            } else {
                *want
            };
            if *shown != Some(want) {
                surface.draw(i % self.cols, i / self.cols, want);
                *shown = Some(want);
            }
        }
        self.shown_cursor = Some(cursor);
    }

    /// A byte of text as the character to show, or `None` for a UTF-8 continuation byte
    /// (a multi-byte character shows as one `?`).
    fn printable(&mut self, b: u8) -> Option<u8> {
        if self.skip > 0 && (0x80..0xC0).contains(&b) {
            self.skip -= 1;
            return None;
        }
        self.skip = 0;
        match b {
            0x20..0x7F => Some(b),
            0xC0..0xE0 => {
                self.skip = 1;
                Some(b'?')
            }
            0xE0..0xF0 => {
                self.skip = 2;
                Some(b'?')
            }
            0xF0..=0xFF => {
                self.skip = 3;
                Some(b'?')
            }
            _ => Some(b'?'),
        }
    }

    fn put(&mut self, ch: u8, attr: u8) {
        if self.col >= self.cols {
            self.newline();
        }
        let i = self.row * self.cols + self.col;
        self.cells[i] = Cell { ch, attr };
        self.touch(i, i + 1);
        self.col += 1;
    }

    fn newline(&mut self) {
        self.col = 0;
        self.row += 1;
        if self.row >= self.rows {
            let step = self.scroll_step;
            self.cells.copy_within(step * self.cols.., 0);
            let n = self.cells.len();
            self.cells[n - step * self.cols..].fill(Cell::BLANK);
            // The changes not yet drawn moved up with the text; the blank rows are new. The
            // flush scrolls the surface too, or redraws all if it cannot.
            let moved = step * self.cols;
            self.dirty = (self.dirty.0.saturating_sub(moved).min(n - moved), n);
            self.scrolled = (self.scrolled + step).min(self.rows);
            self.row = self.rows - step;
        }
    }

    fn clear(&mut self, from: usize, to: usize) {
        let end = to.min(self.cells.len());
        if from < end {
            self.cells[from..end].fill(Cell::BLANK);
            self.touch(from, end);
        }
    }

    /// Notes cells `from..to` as changed, for the next flush.
    fn touch(&mut self, from: usize, to: usize) {
        self.dirty = (self.dirty.0.min(from), self.dirty.1.max(to));
    }

    fn feed(&mut self, b: u8) {
        match self.state {
            State::Ground => self.ground(b),
            State::Escape => match b {
                b'[' => {
                    self.state = State::Csi;
                    self.params = [0; MAX_PARAMS];
                    self.nparams = 0;
                    self.private = false;
                }
                b']' | b'P' | b'X' | b'^' | b'_' => self.state = State::String,
                0x20..=0x2F => self.state = State::EscapeIntermediate,
                // ESC 7, ESC 8, ESC c, ESC =, ...: one byte, dropped.
                _ => self.state = State::Ground,
            },
            State::EscapeIntermediate => self.state = State::Ground,
            State::Csi => self.csi_byte(b),
            State::String => match b {
                0x07 => self.state = State::Ground,
                0x1B => self.state = State::StringEscape,
                _ => {}
            },
            State::StringEscape => {
                self.state = if b == b'\\' {
                    State::Ground
                } else {
                    State::String
                };
            }
        }
    }

    fn ground(&mut self, b: u8) {
        match b {
            0x1B => {
                self.skip = 0;
                self.state = State::Escape;
            }
            b'\r' => self.col = 0,
            // dom0's terminal sends CR LF; a bare LF starts a line too, rather than leave a
            // staircase on the screen.
            b'\n' | 0x0B | 0x0C => self.newline(),
            0x08 => self.col = self.col.min(self.cols).saturating_sub(1),
            b'\t' => {
                let next = (self.col / 8 + 1) * 8;
                while self.col < next.min(self.cols) {
                    self.put(b' ', self.pen);
                }
            }
            0x00..0x20 | 0x7F => {}
            _ => {
                if let Some(ch) = self.printable(b) {
                    self.put(ch, self.pen);
                }
            }
        }
    }

    fn csi_byte(&mut self, b: u8) {
        match b {
            b'0'..=b'9' => {
                if self.nparams == 0 {
                    self.nparams = 1;
                }
                if let Some(p) = self.params.get_mut(self.nparams - 1) {
                    *p = p.saturating_mul(10).saturating_add(u16::from(b - b'0'));
                }
            }
            b';' => {
                self.nparams = (self.nparams.max(1) + 1).min(MAX_PARAMS + 1);
            }
            b'<'..=b'?' => self.private = true,
            0x20..=0x2F => {}
            0x40..=0x7E => {
                self.state = State::Ground;
                if !self.private {
                    self.csi_final(b);
                }
            }
            // A control character inside a sequence is carried out (ECMA-48 §5.4); ESC
            // starts a new sequence.
            0x1B => self.state = State::Escape,
            _ => self.ground_control(b),
        }
    }

    fn ground_control(&mut self, b: u8) {
        if b < 0x20 {
            self.ground(b);
        }
    }

    /// Parameter `i`, or `default` when absent or zero.
    fn param(&self, i: usize, default: usize) -> usize {
        match self.params.get(i) {
            Some(&p) if i < self.nparams && p != 0 => usize::from(p),
            _ => default,
        }
    }

    fn csi_final(&mut self, f: u8) {
        let n = self.param(0, 1);
        let (cols, rows) = (self.cols, self.rows);
        match f {
            b'A' => self.row = self.row.saturating_sub(n),
            b'B' => self.row = (self.row + n).min(rows - 1),
            b'C' => self.col = (self.col + n).min(cols - 1),
            b'D' => self.col = self.col.min(cols).saturating_sub(n),
            b'G' => self.col = (n - 1).min(cols - 1),
            b'd' => self.row = (n - 1).min(rows - 1),
            b'H' | b'f' => {
                self.row = (n - 1).min(rows - 1);
                self.col = (self.param(1, 1) - 1).min(cols - 1);
            }
            b'J' => {
                let at = self.row * cols + self.col.min(cols);
                match self.param(0, 0) {
                    0 => self.clear(at, self.cells.len()),
                    1 => self.clear(0, at + 1),
                    _ => self.clear(0, self.cells.len()),
                }
            }
            b'K' => {
                let start = self.row * cols;
                let at = start + self.col.min(cols);
                match self.param(0, 0) {
                    0 => self.clear(at, start + cols),
                    1 => self.clear(start, at + 1),
                    _ => self.clear(start, start + cols),
                }
            }
            b'm' => self.sgr(),
            _ => {}
        }
    }

    /// Select Graphic Rendition: reset, bold (bright foreground), reverse, the eight colours
    /// and their bright forms; the rest is ignored.
    fn sgr(&mut self) {
        let count = self.nparams.clamp(1, MAX_PARAMS);
        for i in 0..count {
            let p = if i < self.nparams { self.params[i] } else { 0 };
            match p {
                0 => self.pen = ATTR_NORMAL,
                1 => self.pen |= 0x08,
                22 => self.pen &= !0x08,
                7 => {
                    self.pen = Cell {
                        ch: 0,
                        attr: self.pen,
                    }
                    .inverted()
                    .attr
                }
                30..=37 => self.pen = (self.pen & 0xF8) | ANSI_TO_VGA[usize::from(p - 30)],
                39 => self.pen = (self.pen & 0xF0) | (ATTR_NORMAL & 0x0F),
                40..=47 => {
                    self.pen = (self.pen & 0x0F) | (ANSI_TO_VGA[usize::from(p - 40)] << 4);
                }
                49 => self.pen &= 0x0F,
                90..=97 => self.pen = (self.pen & 0xF0) | ANSI_TO_VGA[usize::from(p - 90)] | 0x08,
                _ => {}
            }
        }
    }
}

/// A framebuffer's pixel layout: bytes per pixel and where each colour's bits are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelFormat {
    /// Bytes per pixel: 2, 3 or 4.
    pub bytes: usize,
    /// `(position, size)` in bits of red, green and blue.
    pub red: (u8, u8),
    /// See `red`.
    pub green: (u8, u8),
    /// See `red`.
    pub blue: (u8, u8),
}

impl PixelFormat {
    /// The value of a pixel of colour 0xRRGGBB.
    pub fn encode(&self, rgb: u32) -> u32 {
        let field = |value: u32, (pos, size): (u8, u8)| {
            let size = u32::from(size.min(8));
            let v = (value & 0xFF) >> (8 - size);
            v.checked_shl(u32::from(pos)).unwrap_or(0)
        };
        field(rgb >> 16, self.red) | field(rgb >> 8, self.green) | field(rgb, self.blue)
    }
}

/// The colour (0xRRGGBB) of pixel (`x`, `y`) of `cell` drawn with the font: the glyph's
/// intensity blends the foreground over the background. Characters the font lacks show as
/// `?`.
pub fn cell_pixel(cell: Cell, x: usize, y: usize) -> u32 {
    let (fg, bg) = colours(cell);
    let i = glyph(cell.ch).and_then(|g| g.pixel(x, y)).unwrap_or(0);
    blend(fg, bg, i)
}

/// Calls `put(x, y, colour)` for every pixel of `cell`, row by row ([`cell_pixel`]'s
/// colours, the glyph looked up once).
pub fn draw_cell(cell: Cell, mut put: impl FnMut(usize, usize, u32)) {
    let (fg, bg) = colours(cell);
    let glyph = glyph(cell.ch).filter(|_| cell.ch != b' ');
    for y in 0..CELL_HEIGHT {
        for x in 0..CELL_WIDTH {
            let i = glyph.as_ref().and_then(|g| g.pixel(x, y)).unwrap_or(0);
            put(x, y, if i == 0 { bg } else { blend(fg, bg, i) });
        }
    }
}

fn colours(cell: Cell) -> (u32, u32) {
    (
        PALETTE[usize::from(cell.attr & 0x0F)],
        PALETTE[usize::from((cell.attr >> 4) & 0x07)],
    )
}

fn glyph(ch: u8) -> Option<noto_sans_mono_bitmap::RasterizedChar> {
    get_raster(char::from(ch), WEIGHT, HEIGHT).or_else(|| get_raster('?', WEIGHT, HEIGHT))
}

/// `fg` over `bg` at intensity `i` (0: all `bg`, 255: all `fg`), channel by channel.
pub fn blend(fg: u32, bg: u32, i: u8) -> u32 {
    let i = u32::from(i);
    let mut out = 0;
    for shift in [0, 8, 16] {
        let (f, b) = ((fg >> shift) & 0xFF, (bg >> shift) & 0xFF);
        out |= ((f * i + b * (255 - i) + 127) / 255) << shift;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder(Vec<(usize, usize, Cell)>);

    impl Surface for Recorder {
        fn draw(&mut self, col: usize, row: usize, cell: Cell) {
            self.0.push((col, row, cell));
        }
    }

    fn term(cols: usize, rows: usize) -> Terminal {
        Terminal::new(cols, rows, 1).unwrap()
    }

    #[test]
    fn log_lines_scroll() {
        let mut t = term(10, 3);
        t.write_log(b"one\ntwo\nthree\nfour\n", ATTR_WARNING);
        assert_eq!(t.row_text(0), "three");
        assert_eq!(t.row_text(1), "four");
        assert_eq!(t.row_text(2), "");
        assert_eq!(t.cell(0, 0).attr, ATTR_WARNING);
        assert_eq!(t.cursor(), (0, 2));
    }

    #[test]
    fn long_lines_wrap() {
        let mut t = term(4, 3);
        t.write_terminal(b"abcdefg");
        assert_eq!(t.row_text(0), "abcd");
        assert_eq!(t.row_text(1), "efg");
    }

    #[test]
    fn line_editing_as_dom0_echoes_it() {
        let mut t = term(20, 3);
        // dom0's shell: prompt, typed text, a backspace's "\b \b", then more.
        t.write_terminal(b"dom0# xl lisx\x08 \x08t\r\n");
        assert_eq!(t.row_text(0), "dom0# xl list");
        assert_eq!(t.cursor(), (0, 1));
        // Redraw of the line: CR, the text again, erase to the end of the line.
        t.write_terminal(b"dom0# abcdef\r\x1b[Kdom0# ab\x1b[1D");
        assert_eq!(t.row_text(1), "dom0# ab");
        assert_eq!(t.cursor(), (7, 1));
    }

    #[test]
    fn colours_and_unknown_sequences() {
        let mut t = term(20, 3);
        t.write_terminal(b"\x1b[1;31mred\x1b[0m \x1b[?25l\x1b]0;title\x07\x1b(Bok\x1b[6n");
        assert_eq!(t.row_text(0), "red ok");
        assert_eq!(t.cell(0, 0).attr, 0x0C);
        assert_eq!(t.cell(4, 0).attr, ATTR_NORMAL);
    }

    #[test]
    fn cursor_positions_and_clear() {
        let mut t = term(10, 4);
        t.write_terminal(b"aaaa\r\nbbbb\r\ncccc\x1b[2;3H\x1b[J");
        assert_eq!(t.row_text(0), "aaaa");
        assert_eq!(t.row_text(1), "bb");
        assert_eq!(t.row_text(2), "");
        t.write_terminal(b"\x1b[2J\x1b[99;99Hz");
        assert_eq!(t.row_text(3), "         z");
    }

    #[test]
    fn utf8_and_controls_show_no_garbage() {
        let mut t = term(20, 2);
        t.write_terminal("é\x01\x7fx".as_bytes());
        assert_eq!(t.row_text(0), "?x");
        t.write_log(b"a\x1bb", ATTR_NORMAL);
        assert_eq!(t.row_text(0), "?xa?b");
    }

    #[test]
    fn flush_draws_only_what_changed() {
        let mut t = term(4, 2);
        let mut r = Recorder(Vec::new());
        t.flush(&mut r);
        assert_eq!(r.0.len(), 8, "everything at first");
        r.0.clear();
        t.write_terminal(b"ab");
        t.flush(&mut r);
        // 'a', 'b' and the cursor's move from (0,0) to (2,0): cells 0, 1, 2.
        let drawn: Vec<(usize, usize)> = r.0.iter().map(|&(c, row, _)| (c, row)).collect();
        assert_eq!(drawn, [(0, 0), (1, 0), (2, 0)]);
        assert_eq!(r.0[2].2, Cell::BLANK.inverted());
        r.0.clear();
        t.flush(&mut r);
        assert!(r.0.is_empty());
    }

    /// A surface that keeps what was drawn, to compare with what the terminal holds; with
    /// `scrolls`, it moves its contents up as VGA text memory does (the rows left at the
    /// bottom keep what they had).
    struct Mirror(Vec<Option<Cell>>, usize, bool);

    impl Surface for Mirror {
        fn draw(&mut self, col: usize, row: usize, cell: Cell) {
            self.0[row * self.1 + col] = Some(cell);
        }
        fn scroll_up(&mut self, rows: usize) -> bool {
            if self.2 {
                self.0.copy_within(rows * self.1.., 0);
            }
            self.2
        }
    }

    #[test]
    fn flushing_only_changed_cells_keeps_the_screen_exact() {
        // Writes of every kind (text, newlines and scrolls, erases, cursor moves, colours),
        // each followed by a flush: the screen always equals the terminal's cells, the cursor
        // inverted.
        for (scrolls, step) in [(false, 1), (true, 1), (true, 2)] {
            check_mirror(scrolls, step);
        }
    }

    fn check_mirror(scrolls: bool, step: usize) {
        let mut t = Terminal::new(7, 4, step).unwrap();
        let mut m = Mirror(alloc::vec![None; 28], 7, scrolls);
        let mut seed = 0x1234_5678u32;
        let pieces: [&[u8]; 9] = [
            b"abc",
            b"\n",
            b"\r",
            b"\x08",
            b"\x1b[K",
            b"\x1b[2J",
            b"\x1b[H",
            b"\x1b[31mred",
            b"a long line that wraps",
        ];
        for _ in 0..2000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let piece = pieces[(seed >> 16) as usize % pieces.len()];
            if seed & 1 == 0 {
                t.write_terminal(piece);
            } else {
                t.write_log(piece, ATTR_WARNING);
            }
            // Sometimes several writes between flushes.
            if seed & 6 == 0 {
                continue;
            }
            t.flush(&mut m);
            let (cc, cr) = t.cursor();
            for row in 0..4 {
                for col in 0..7 {
                    let want = if (col, row) == (cc, cr) {
                        t.cell(col, row).inverted()
                    } else {
                        t.cell(col, row)
                    };
                    assert_eq!(m.0[row * 7 + col], Some(want), "cell ({col}, {row})");
                }
            }
        }
    }

    #[test]
    fn jump_scroll_moves_several_rows() {
        let mut t = Terminal::new(5, 4, 2).unwrap();
        t.write_log(b"1\n2\n3\n4\n", ATTR_NORMAL);
        assert_eq!(t.row_text(0), "3");
        assert_eq!(t.row_text(1), "4");
        assert_eq!(t.cursor(), (0, 2));
    }

    #[test]
    fn pixels() {
        let f = PixelFormat {
            bytes: 4,
            red: (16, 8),
            green: (8, 8),
            blue: (0, 8),
        };
        assert_eq!(f.encode(0x123456), 0x123456);
        let f565 = PixelFormat {
            bytes: 2,
            red: (11, 5),
            green: (5, 6),
            blue: (0, 5),
        };
        assert_eq!(f565.encode(0xFFFFFF), 0xFFFF);
        assert_eq!(blend(0xAAAAAA, 0, 255), 0xAAAAAA);
        assert_eq!(blend(0xAAAAAA, 0, 0), 0);
        let blank = Cell::BLANK;
        assert_eq!(cell_pixel(blank, 3, 3), 0);
        let a = Cell {
            ch: b'#',
            attr: ATTR_NORMAL,
        };
        assert!((0..CELL_WIDTH).any(|x| (0..CELL_HEIGHT).any(|y| cell_pixel(a, x, y) != 0)));
    }
}
