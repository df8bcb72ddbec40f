//! A lean HTTP/1.1 client for the load generator: it writes each request in one `write`
//! and parses the answer itself. The load generator shares the machine's two cores with
//! the daemon it measures, so every microsecond it spends per request is taken from the
//! daemon; hyper's client cost about 20 µs per request here, this one about a third.

use std::net::SocketAddr;

use pimsync::simulate::SignedRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive connection. After an error it must be dropped: the stream may be
/// mid-answer.
pub struct RawConnection {
    stream: TcpStream,
    host: String,
    out: Vec<u8>,
    input: Vec<u8>,
}

impl RawConnection {
    pub async fn connect(addr: SocketAddr) -> Result<RawConnection, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(RawConnection {
            stream,
            host: addr.to_string(),
            out: Vec::with_capacity(2048),
            input: Vec::with_capacity(1024),
        })
    }

    /// POSTs `request` to `path` and reads the whole answer; returns its status.
    pub async fn post(&mut self, path: &str, request: &SignedRequest) -> Result<u16, String> {
        use std::io::Write;
        self.out.clear();
        let _ = write!(self.out, "POST {path} HTTP/1.1\r\nhost: {}\r\n", self.host);
        for (name, value) in &request.headers {
            let _ = write!(self.out, "{name}: {value}\r\n");
        }
        let _ = write!(self.out, "content-length: {}\r\n\r\n", request.body.len());
        self.out.extend_from_slice(&request.body);
        (self.stream.write_all(&self.out).await).map_err(|e| format!("send: {e}"))?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> Result<u16, String> {
        self.input.clear();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.input) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let status = response.code.ok_or("answer without a status")?;
                    let length = content_length(response.headers)?;
                    let total = head_len + length;
                    while self.input.len() < total {
                        self.fill().await?;
                    }
                    if self.input.len() > total {
                        return Err("more bytes than one answer".into());
                    }
                    return Ok(status);
                }
                Ok(httparse::Status::Partial) => self.fill().await?,
                Err(error) => return Err(format!("answer: {error}")),
            }
        }
    }

    async fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) => Err("connection closed".into()),
            Ok(n) => {
                self.input.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("receive: {e}")),
        }
    }
}

fn content_length(headers: &[httparse::Header<'_>]) -> Result<usize, String> {
    let mut length = None;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked answers are not supported".into());
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value).ok();
            length = value.and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_none() {
                return Err("bad content-length".into());
            }
        }
    }
    Ok(length.unwrap_or(0))
}
