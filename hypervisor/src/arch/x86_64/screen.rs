//! The screen's memory (DESIGN.md §13): VGA text memory or a linear framebuffer, mapped
//! uncached in the MMIO slot (which also refuses it to dom0's `DOMID_IO` mappings: it is the
//! hypervisor's). The terminal that decides what to draw is `xenia_core::screen`; this module
//! only stores cells and pixels.
//!
//! Uncached, not write-combining: the PAT is left as firmware set it. A full redraw of a
//! 1024x768 framebuffer is then slower on real hardware (every store is a bus write), which
//! the console keeps rare (it redraws only the cells that changed and scrolls several rows at
//! a time on a framebuffer).

use xenia_core::screen::{CELL_HEIGHT, CELL_WIDTH, Cell, PixelFormat, Surface, draw_cell};

use super::paging;

/// VGA text memory: `cols` x `rows` cells of a character byte and an attribute byte (IBM
/// VGA Technical Reference, "Alphanumeric modes").
pub struct TextMemory {
    base: u64,
    cols: usize,
    rows: usize,
}

impl TextMemory {
    /// Maps `cols` x `rows` cells at physical address `phys`.
    pub fn map(phys: u64, cols: usize, rows: usize) -> Result<TextMemory, paging::MapError> {
        let len = (cols * rows * 2) as u64;
        let base = paging::map_mmio(phys, len)?;
        Ok(TextMemory { base, cols, rows })
    }
}

impl Surface for TextMemory {
    fn draw(&mut self, col: usize, row: usize, cell: Cell) {
        if col >= self.cols || row >= self.rows {
            return;
        }
        let at = self.base + ((row * self.cols + col) * 2) as u64;
        // SAFETY: `map` mapped cols x rows 16-bit cells at `base`, writable and uncached, for
        // the hypervisor alone; (col, row) is inside, checked above.
        unsafe {
            core::ptr::write_volatile(
                at as *mut u16,
                u16::from(cell.attr) << 8 | u16::from(cell.ch),
            )
        };
    }

    fn scroll_up(&mut self, rows: usize) -> bool {
        if rows == 0 || rows >= self.rows {
            return false;
        }
        let (moved, cells) = (rows * self.cols, self.rows * self.cols);
        // SAFETY: both ranges lie in the cols x rows cells `map` mapped at `base`, for the
        // hypervisor alone (`rows` < the row count, checked above); `copy` allows the overlap.
        // VGA text memory is plain memory to the CPU: a block copy is what `draw` would do
        // cell by cell.
        unsafe {
            core::ptr::copy(
                (self.base as *const u16).add(moved),
                self.base as *mut u16,
                cells - moved,
            )
        };
        true
    }
}

/// A linear RGB framebuffer.
pub struct PixelMemory {
    base: u64,
    pitch: usize,
    width: usize,
    height: usize,
    format: PixelFormat,
}

impl PixelMemory {
    /// Maps the framebuffer of `height` lines of `pitch` bytes at physical address `phys`, and
    /// clears it.
    pub fn map(
        phys: u64,
        pitch: usize,
        width: usize,
        height: usize,
        format: PixelFormat,
    ) -> Result<PixelMemory, paging::MapError> {
        let len = pitch as u64 * height as u64;
        let base = paging::map_mmio(phys, len)?;
        // SAFETY: `map_mmio` mapped `len` bytes at `base`, writable, for the hypervisor alone.
        unsafe { core::ptr::write_bytes(base as *mut u8, 0, len as usize) };
        Ok(PixelMemory {
            base,
            pitch,
            width,
            height,
            format,
        })
    }

    /// Text cells that fit: (columns, rows).
    pub fn cells(&self) -> (usize, usize) {
        (self.width / CELL_WIDTH, self.height / CELL_HEIGHT)
    }
}

impl Surface for PixelMemory {
    fn draw(&mut self, col: usize, row: usize, cell: Cell) {
        let bytes = self.format.bytes;
        let (x0, y0) = (col * CELL_WIDTH, row * CELL_HEIGHT);
        if x0 + CELL_WIDTH > self.width || y0 + CELL_HEIGHT > self.height || bytes > 4 {
            return;
        }
        let (base, pitch, format) = (self.base, self.pitch, self.format);
        let mut line = [0u8; CELL_WIDTH * 4];
        draw_cell(cell, |x, y, rgb| {
            let v = format.encode(rgb).to_le_bytes();
            line[x * bytes..x * bytes + bytes].copy_from_slice(&v[..bytes]);
            if x + 1 == CELL_WIDTH {
                let at = base + ((y0 + y) * pitch + x0 * bytes) as u64;
                // SAFETY: `map` mapped `pitch * height` bytes at `base`, for the hypervisor
                // alone; line y0 + y < height and pixels x0 .. x0 + CELL_WIDTH <= width (checked
                // above), whose bytes lie within the line (pitch >= width * bytes was checked
                // when the tag was read).
                unsafe {
                    core::ptr::copy_nonoverlapping(line.as_ptr(), at as *mut u8, CELL_WIDTH * bytes)
                };
            }
        });
    }
}
