//! QEMU's human monitor over a Unix socket (`-monitor unix:<dir>/monitor.sock,server=on,
//! wait=off`), for what a scenario cannot see or do on the serial line: keys on the PS/2
//! keyboard (`sendkey`), the VGA text screen (`pmemsave` of 0xB8000) and the framebuffer
//! (`screendump`, a PPM image).
//!
//! Every exchange has a deadline: the socket's read timeout bounds each read and a whole
//! command's answer must come before [`COMMAND_TIMEOUT`].

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long one monitor command may take to answer.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// How long QEMU may take to create the socket after it started.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The monitor's prompt, which ends every answer.
const PROMPT: &str = "(qemu) ";

/// VGA text memory: where, and its size for 80x25 cells of two bytes.
pub const VGA_TEXT_ADDRESS: u64 = 0xB8000;
/// Columns and rows of VGA text mode 3.
pub const VGA_COLS: usize = 80;
/// See [`VGA_COLS`].
pub const VGA_ROWS: usize = 25;

/// A connection to a QEMU's monitor.
pub struct Monitor {
    stream: UnixStream,
}

impl Monitor {
    /// Connects to the monitor socket at `path`, waiting (bounded) for QEMU to create it, and
    /// reads the greeting up to the first prompt.
    pub fn connect(path: &Path) -> Result<Monitor, String> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    // QEMU has not created the socket yet: look again shortly (a bounded
                    // retry of a connection, not a wait for the guest).
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(format!(
                        "cannot connect to QEMU's monitor at {}: {e}",
                        path.display()
                    ));
                }
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| format!("monitor socket: {e}"))?;
        let mut monitor = Monitor { stream };
        monitor.read_to_prompt()?;
        Ok(monitor)
    }

    /// Reads until the prompt, returning what came before it.
    fn read_to_prompt(&mut self) -> Result<String, String> {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&got);
            if let Some(at) = text.rfind(PROMPT)
                && text[at..].len() == PROMPT.len()
            {
                return Ok(text[..at].to_string());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "QEMU's monitor did not answer within {}s; got {text:?}",
                    COMMAND_TIMEOUT.as_secs()
                ));
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Err("QEMU's monitor closed the connection".into()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading QEMU's monitor: {e}")),
            }
        }
    }

    /// Runs `command` and returns its answer (the echo of the command and terminal escapes
    /// removed).
    pub fn command(&mut self, command: &str) -> Result<String, String> {
        if command.contains(['\n', '\r']) {
            return Err(format!("monitor command {command:?}: one line only"));
        }
        self.stream
            .write_all(format!("{command}\n").as_bytes())
            .map_err(|e| format!("writing to QEMU's monitor: {e}"))?;
        let raw = self.read_to_prompt()?;
        let clean = strip_escapes(&raw);
        // The monitor echoes the command line first.
        let answer = match clean.find('\n') {
            Some(i) => &clean[i + 1..],
            None => "",
        };
        Ok(answer.replace('\r', ""))
    }
}

/// `text` without ANSI escape sequences (the monitor's line editor redraws with them).
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if ('\x40'..='\x7e').contains(&d) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

/// QEMU's `sendkey` names of the keys that type `text` on a US keyboard (`shift-` for
/// capitals and shifted symbols). An error names a character it cannot type.
pub fn key_names(text: &str) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    for c in text.chars() {
        let name = match c {
            'a'..='z' | '0'..='9' => c.to_string(),
            'A'..='Z' => format!("shift-{}", c.to_ascii_lowercase()),
            ' ' => "spc".into(),
            '\n' | '\r' => "ret".into(),
            '\t' => "tab".into(),
            '-' => "minus".into(),
            '_' => "shift-minus".into(),
            '=' => "equal".into(),
            '+' => "shift-equal".into(),
            '.' => "dot".into(),
            ',' => "comma".into(),
            '/' => "slash".into(),
            '\\' => "backslash".into(),
            '|' => "shift-backslash".into(),
            ';' => "semicolon".into(),
            ':' => "shift-semicolon".into(),
            '\'' => "apostrophe".into(),
            '"' => "shift-apostrophe".into(),
            '>' => "shift-dot".into(),
            '<' => "shift-comma".into(),
            '*' => "shift-8".into(),
            '#' => "shift-3".into(),
            '$' => "shift-4".into(),
            '&' => "shift-7".into(),
            '(' => "shift-9".into(),
            ')' => "shift-0".into(),
            _ => return Err(format!("no sendkey name for {c:?}")),
        };
        keys.push(name);
    }
    Ok(keys)
}

/// The 80x25 VGA text screen in `memory` (a `pmemsave` of 0xB8000, 4000 bytes): one string
/// per row, trailing blanks removed; non-ASCII cells as `?`.
pub fn vga_text(memory: &[u8]) -> Vec<String> {
    memory
        .chunks(VGA_COLS * 2)
        .take(VGA_ROWS)
        .map(|row| {
            let s: String = row
                .chunks(2)
                .map(|cell| match cell[0] {
                    0 => ' ',
                    b @ 0x20..=0x7e => char::from(b),
                    _ => '?',
                })
                .collect();
            s.trim_end().to_string()
        })
        .collect()
}

/// An image from `screendump`: width, height and RGB bytes.
#[derive(Clone, Debug)]
pub struct Image {
    /// Pixels per line.
    pub width: usize,
    /// Lines.
    pub height: usize,
    /// `width * height` pixels of 3 bytes, line by line.
    pub rgb: Vec<u8>,
}

impl Image {
    /// Pixel (`x`, `y`) as 0xRRGGBB.
    pub fn pixel(&self, x: usize, y: usize) -> u32 {
        let i = (y * self.width + x) * 3;
        u32::from(self.rgb[i]) << 16 | u32::from(self.rgb[i + 1]) << 8 | u32::from(self.rgb[i + 2])
    }
}

/// Parses a binary PPM (`P6`, maxval 255), as QEMU's `screendump` writes it.
pub fn parse_ppm(data: &[u8]) -> Result<Image, String> {
    // Header: "P6", width, height, maxval, separated by whitespace, then one whitespace byte.
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while i < data.len() && data[i].is_ascii_whitespace() {
            i += 1;
        }
        if data.get(i) == Some(&b'#') {
            while i < data.len() && data[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        while i < data.len() && !data[i].is_ascii_whitespace() {
            i += 1;
        }
        if start == i {
            return Err("PPM: header cut short".into());
        }
        fields.push(String::from_utf8_lossy(&data[start..i]).into_owned());
    }
    i += 1;
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(format!("PPM: expected P6 with maxval 255, got {fields:?}"));
    }
    let number = |s: &str| s.parse::<usize>().map_err(|e| format!("PPM: {s:?}: {e}"));
    let (width, height) = (number(&fields[1])?, number(&fields[2])?);
    let len = width * height * 3;
    let rgb = data
        .get(i..i + len)
        .ok_or_else(|| format!("PPM: {width}x{height} needs {len} bytes of pixels"))?
        .to_vec();
    Ok(Image { width, height, rgb })
}

/// The text the hypervisor's screen console drew on a framebuffer screenshot, row by row
/// (trailing blanks removed): each cell of the console's grid (from the top-left corner,
/// `xenia_core::screen::CELL_WIDTH` x `CELL_HEIGHT` pixels) is compared pixel for pixel with
/// every printable character drawn in a palette colour over black, as the hypervisor draws it
/// (`xenia_core::screen::cell_pixel`). The cursor on a blank reads as a blank; a cell that
/// matches nothing (the cursor on a character, a damaged cell) reads `?`.
pub fn framebuffer_text(img: &Image) -> Vec<String> {
    use xenia_core::screen::{CELL_HEIGHT, CELL_WIDTH, Cell, PALETTE, cell_pixel};
    let (cols, rows) = (img.width / CELL_WIDTH, img.height / CELL_HEIGHT);
    let brightness = |rgb: u32| (rgb >> 16 & 0xFF) + (rgb >> 8 & 0xFF) + (rgb & 0xFF);
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut line = String::with_capacity(cols);
        for col in 0..cols {
            let (x0, y0) = (col * CELL_WIDTH, row * CELL_HEIGHT);
            let px = |x: usize, y: usize| img.pixel(x0 + x, y0 + y);
            let mut brightest = 0u32;
            for y in 0..CELL_HEIGHT {
                for x in 0..CELL_WIDTH {
                    let p = px(x, y);
                    if brightness(p) > brightness(brightest) {
                        brightest = p;
                    }
                }
            }
            // A blank cell, or the cursor on one (a solid block of one colour).
            if brightest == 0
                || (0..CELL_HEIGHT).all(|y| (0..CELL_WIDTH).all(|x| px(x, y) == brightest))
            {
                line.push(' ');
                continue;
            }
            // The foreground is a palette colour at least as bright in every channel as the
            // brightest pixel (glyph pixels blend it over black).
            let covers =
                |c: u32| (0..3).all(|i| (c >> (8 * i) & 0xFF) >= (brightest >> (8 * i) & 0xFF));
            let found = (1..PALETTE.len())
                .filter(|&attr| covers(PALETTE[attr]))
                .find_map(|attr| {
                    (0x21u8..0x7F).find(|&ch| {
                        let cell = Cell {
                            ch,
                            attr: attr as u8,
                        };
                        (0..CELL_HEIGHT)
                            .all(|y| (0..CELL_WIDTH).all(|x| cell_pixel(cell, x, y) == px(x, y)))
                    })
                });
            line.push(found.map_or('?', char::from));
        }
        out.push(line.trim_end().to_string());
    }
    out
}

/// A file in `dir` for the monitor to write (QEMU runs as the same user).
pub fn dump_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_for_text() {
        assert_eq!(
            key_names("xl list\n").unwrap(),
            ["x", "l", "spc", "l", "i", "s", "t", "ret"]
        );
        assert_eq!(
            key_names("D-|").unwrap(),
            ["shift-d", "minus", "shift-backslash"]
        );
        assert!(key_names("é").is_err());
    }

    #[test]
    fn vga_rows() {
        let mut mem = vec![0u8; 4000];
        for (i, b) in b"dom0# ".iter().enumerate() {
            mem[160 + 2 * i] = *b;
            mem[160 + 2 * i + 1] = 0x07;
        }
        let rows = vga_text(&mem);
        assert_eq!(rows.len(), 25);
        assert_eq!(rows[0], "");
        assert_eq!(rows[1], "dom0#");
    }

    #[test]
    fn ppm() {
        let mut data = b"P6\n# qemu\n2 1\n255\n".to_vec();
        data.extend([1, 2, 3, 4, 5, 6]);
        let img = parse_ppm(&data).unwrap();
        assert_eq!((img.width, img.height), (2, 1));
        assert_eq!(img.pixel(1, 0), 0x040506);
        assert!(parse_ppm(b"P6\n2 2\n255\n\x00").is_err());
        assert!(parse_ppm(b"P3\n1 1\n255\n").is_err());
    }

    #[test]
    fn framebuffer_cells_read_back() {
        use xenia_core::screen::{
            ATTR_NORMAL, ATTR_WARNING, CELL_HEIGHT, CELL_WIDTH, Cell, cell_pixel,
        };
        let (cols, rows) = (12, 2);
        let (width, height) = (cols * CELL_WIDTH + 3, rows * CELL_HEIGHT + 5);
        let mut img = Image {
            width,
            height,
            rgb: vec![0; width * height * 3],
        };
        let mut put = |col: usize, row: usize, cell: Cell| {
            for y in 0..CELL_HEIGHT {
                for x in 0..CELL_WIDTH {
                    let rgb = cell_pixel(cell, x, y);
                    let i = ((row * CELL_HEIGHT + y) * width + col * CELL_WIDTH + x) * 3;
                    img.rgb[i..i + 3].copy_from_slice(&rgb.to_be_bytes()[1..]);
                }
            }
        };
        for (i, ch) in b"dom0# xl".iter().enumerate() {
            put(
                i,
                1,
                Cell {
                    ch: *ch,
                    attr: ATTR_NORMAL,
                },
            );
        }
        for (i, ch) in b"(XEN) Il1|".iter().enumerate() {
            put(
                i,
                0,
                Cell {
                    ch: *ch,
                    attr: ATTR_WARNING,
                },
            );
        }
        let text = framebuffer_text(&img);
        assert_eq!(text, ["(XEN) Il1|", "dom0# xl"]);
    }

    #[test]
    fn escapes_go() {
        assert_eq!(strip_escapes("a\x1b[K\x1b[1Db"), "ab");
    }
}
