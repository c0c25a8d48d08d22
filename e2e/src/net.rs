//! Loopback helpers for tests that start their own servers: a free port,
//! and a plain HTTP GET (for `/metrics` and health endpoints).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// An address on 127.0.0.1 that nothing listens on right now.
///
/// # Errors
/// When no port can be bound.
pub fn free_addr() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// `GET path` on `addr`; the whole response (status line, headers, body).
///
/// # Errors
/// When the connection fails or the answer does not come within 5 s.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}
