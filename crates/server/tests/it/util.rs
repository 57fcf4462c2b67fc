//! Test utilities: spawn the real `server` binary, talk HTTP/1.1 to it over real sockets.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A running `server` process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
}

/// Environment for a test server: loopback, a free port, JSON logs.
pub fn base_env() -> Vec<(&'static str, String)> {
    vec![
        ("BIND", "127.0.0.1".into()),
        ("PORT", "0".into()),
        ("LOG_FORMAT", "json".into()),
        ("APP_VERSION", "v-test".into()),
        ("TASK_ID", "task-test".into()),
    ]
}

pub fn command(env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_server"));
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

impl Server {
    /// Starts the binary and waits (with a deadline) for its `listening` log line.
    pub async fn start(env: &[(&str, String)]) -> Server {
        let mut child = command(env).spawn().expect("spawn server");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sink = Arc::clone(&logs);
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "listening"
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("server did not log `listening` within 10s")
            .expect("server exited before listening");
        Server {
            child,
            addr: addr.parse().expect("listening addr"),
            logs,
        }
    }

    pub fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("server still running");
        kill(Pid::from_raw(pid as i32), signal).expect("kill");
    }

    /// Waits for exit with a deadline; returns the exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> i32 {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .expect("server did not exit in time")
            .expect("wait");
        status.code().expect("exited by a signal")
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// One HTTP/1.1 connection that can carry several requests (keep-alive).
pub struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| std::io::Error::other(chain(&e)))?;
        tokio::spawn(conn);
        Ok(Conn { sender, addr })
    }

    pub async fn request(&mut self, method: &str, path: &str) -> Result<Answer, String> {
        self.sender.ready().await.map_err(|e| chain(&e))?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let res = self.sender.send_request(req).await.map_err(|e| chain(&e))?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await.map_err(|e| chain(&e))?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    pub async fn get(&mut self, path: &str) -> Result<Answer, String> {
        self.request("GET", path).await
    }

    /// Whether the server has closed this connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// An error and every cause beneath it, `outer: inner: ...`. hyper says only `connection error`
/// for an I/O error; what the OS said (`Connection reset by peer`, `Broken pipe`) is its source,
/// and telling a refused connect from a dropped one needs it.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// GET on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Answer, String> {
    let mut conn = Conn::open(addr).await.map_err(|e| e.to_string())?;
    conn.get(path).await
}

/// Writes raw bytes, returns whatever the server answers until it closes (or 5 s pass).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `check` until it is true or `within` passes; returns how long it took.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Waits (up to 5 s) until the server at `addr` counts `n` requests in flight besides the
/// `/version` request asking; false if it never does.
pub async fn wait_for_in_flight(addr: SocketAddr, n: u64) -> bool {
    eventually(Duration::from_secs(5), || async move {
        let Ok(v) = get(addr, "/version").await else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_str(&v.body).unwrap_or_default();
        v["in_flight"].as_u64() == Some(n + 1)
    })
    .await
    .is_some()
}
