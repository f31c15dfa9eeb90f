//! TCP throughput between the host and a machine's network, through QEMU's user-mode port
//! forwards ([`crate::machine::Machine::nic`]): [`push`] writes bytes to a discard service
//! (RFC 863, dom0's on port 9), [`pull`] reads them from a chargen service (RFC 864, dom0's on
//! port 19). Both are bounded by a timeout and return how long the transfer took, so a bench
//! can set a domU's figure beside dom0's on the same card in the same run.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// The size of each write and read.
const CHUNK: usize = 64 << 10;

fn connect(port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let left = deadline.saturating_duration_since(Instant::now());
    let stream = TcpStream::connect_timeout(&addr, left.max(Duration::from_millis(1)))
        .map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))?;
    stream.set_nodelay(true).ok();
    Ok(stream)
}

/// What is left of `deadline` as a socket timeout (never zero, which would mean none).
fn left(deadline: Instant, what: &str) -> Result<Duration, String> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(format!("{what}: timed out"))
    } else {
        Ok(d)
    }
}

/// Connects to `127.0.0.1:port`, writes `bytes` bytes, closes its side and waits for the peer
/// to close (so every byte was taken by the service), all within `timeout`. Returns the time
/// from the connection to the peer's close.
pub fn push(port: u16, bytes: usize, timeout: Duration) -> Result<Duration, String> {
    let deadline = Instant::now() + timeout;
    let start = Instant::now();
    let mut s = connect(port, deadline)?;
    let chunk = vec![0x5au8; CHUNK];
    let mut sent = 0;
    while sent < bytes {
        s.set_write_timeout(Some(left(deadline, "push")?))
            .map_err(|e| e.to_string())?;
        let n = (bytes - sent).min(CHUNK);
        s.write_all(&chunk[..n])
            .map_err(|e| format!("push to port {port} after {sent} bytes: {e}"))?;
        sent += n;
    }
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("push: shutdown: {e}"))?;
    // The service closes when it has read everything: wait for that end of stream.
    let mut sink = [0u8; 512];
    loop {
        s.set_read_timeout(Some(left(deadline, "push: waiting for the peer's close")?))
            .map_err(|e| e.to_string())?;
        match s.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(format!("push: waiting for the peer's close: {e}")),
        }
    }
    Ok(start.elapsed())
}

/// Connects to `127.0.0.1:port` and reads `bytes` bytes within `timeout`, then closes. Returns
/// the time from the connection to the last byte, and the first bytes read (at most 256, to
/// check what the service sends).
pub fn pull(port: u16, bytes: usize, timeout: Duration) -> Result<(Duration, Vec<u8>), String> {
    let deadline = Instant::now() + timeout;
    let start = Instant::now();
    let mut s = connect(port, deadline)?;
    let mut buf = vec![0u8; CHUNK];
    let mut head = Vec::new();
    let mut got = 0;
    while got < bytes {
        s.set_read_timeout(Some(left(deadline, "pull")?))
            .map_err(|e| e.to_string())?;
        let want = (bytes - got).min(CHUNK);
        match s.read(&mut buf[..want]) {
            Ok(0) => return Err(format!("pull from port {port}: closed after {got} bytes")),
            Ok(n) => {
                if head.len() < 256 {
                    let take = n.min(256 - head.len());
                    head.extend_from_slice(&buf[..take]);
                }
                got += n;
            }
            Err(e) => return Err(format!("pull from port {port} after {got} bytes: {e}")),
        }
    }
    let took = start.elapsed();
    let _ = s.shutdown(Shutdown::Both);
    Ok((took, head))
}

/// `bytes` over `took` in MB/s (10^6 bytes a second).
pub fn mb_per_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64().max(1e-9) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn push_and_pull_against_local_services() {
        // A discard service that closes when the client has closed.
        let discard = TcpListener::bind("127.0.0.1:0").unwrap();
        let dport = discard.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = discard.accept().unwrap();
            let mut total = 0;
            let mut buf = [0u8; 4096];
            loop {
                match c.read(&mut buf).unwrap() {
                    0 => break,
                    n => total += n,
                }
            }
            total
        });
        push(dport, 1 << 20, Duration::from_secs(10)).unwrap();
        assert_eq!(server.join().unwrap(), 1 << 20);

        let chargen = TcpListener::bind("127.0.0.1:0").unwrap();
        let cport = chargen.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut c, _) = chargen.accept().unwrap();
            let line = [b'x'; 1024];
            while c.write_all(&line).is_ok() {}
        });
        let (_, head) = pull(cport, 300_000, Duration::from_secs(10)).unwrap();
        assert_eq!(head, vec![b'x'; 256]);

        // Nobody listening: an error, not a hang.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(push(port, 10, Duration::from_secs(2)).is_err());
    }

    #[test]
    fn a_silent_peer_times_out() {
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let keep = std::thread::spawn(move || silent.accept().map(|(c, _)| c));
        let err = pull(port, 10, Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("pull"), "{err}");
        drop(keep);
    }
}
