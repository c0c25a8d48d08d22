//! A real HTTP/1.1 server on loopback for the unit tests of the `http`
//! step and sink: each request's JSON body goes to a handler that returns
//! the status and body to answer. One request per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Answers a request: (the request's number from 0, its JSON body) → (status, body).
pub type Handler = dyn Fn(usize, serde_json::Value) -> (u16, String) + Send + Sync;

/// A running server; stops when dropped.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests answered so far.
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    /// `http://<addr>/udf`.
    pub fn url(&self) -> String {
        format!("http://{}/udf", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Starts a server answering with `handler`.
pub fn serve(
    handler: impl Fn(usize, serde_json::Value) -> (u16, String) + Send + Sync + 'static,
) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let handler: Arc<Handler> = Arc::new(handler);
    let (count, halt) = (requests.clone(), stop.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if halt.load(Ordering::SeqCst) {
                return;
            }
            let Ok(conn) = conn else { continue };
            let (handler, count) = (handler.clone(), count.clone());
            std::thread::spawn(move || {
                let _ = answer(conn, &*handler, &count);
            });
        }
    });
    TestServer {
        addr,
        requests,
        stop,
    }
}

fn answer(conn: TcpStream, handler: &Handler, count: &AtomicUsize) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut len = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let n = count.fetch_add(1, Ordering::SeqCst);
    let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let (status, text) = handler(n, value);
    let mut out = conn;
    write!(
        out,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    out.flush()
}
