//! Requests that stop arriving are cut off: a raw TCP client that sends half a request and then
//! stalls sees the connection closed (or a 408) once the server's short read timeout passes,
//! while whole requests on the same server are still answered.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use selfaware_server::{spawn, Registry, ServerConfig, ServerHandle};

fn start() -> ServerHandle {
    let mut registry = Registry::new();
    registry.add_local(common::MODEL, common::engine()).unwrap();
    let config = ServerConfig {
        port: 0,
        request_read_timeout_ms: 300,
        ..ServerConfig::default()
    };
    spawn(config, registry).unwrap()
}

/// Sends `head` and then nothing; returns what the server wrote before it closed the
/// connection. The socket's own read timeout only keeps a broken server from hanging the test
/// (it then fails): it is far longer than the server's.
fn stall(addr: SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        // A reset after the server gave up is a close too.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "the server kept the stalled connection open ({e}); it wrote {:?}",
            String::from_utf8_lossy(&got)
        ),
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn assert_cut(reply: &str) {
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "expected the connection closed or a 408, got {reply:?}"
    );
}

fn models_ok(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains(common::MODEL), "{got}");
}

#[test]
fn a_half_sent_body_is_cut_off_and_whole_requests_still_work() {
    let server = start();
    let addr = server.addr();
    let body = r#"{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}"#;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{}",
        body.len(),
        &body[..body.len() / 2]
    );
    let reply = stall(addr, &head);
    assert_cut(&reply);
    models_ok(addr);
}

#[test]
fn half_sent_headers_are_cut_off() {
    let server = start();
    let addr = server.addr();
    let reply = stall(
        addr,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-le",
    );
    assert_cut(&reply);
    models_ok(addr);
}

#[test]
fn a_zero_read_timeout_is_refused() {
    let config = ServerConfig {
        port: 0,
        request_read_timeout_ms: 0,
        ..ServerConfig::default()
    };
    // Refused when the server starts, or else reported when it is shut down.
    let err = match spawn(config, Registry::new()) {
        Ok(h) => h.shutdown().unwrap_err(),
        Err(e) => e,
    }
    .to_string();
    assert!(err.contains("request_read_timeout_ms"), "{err}");
}
