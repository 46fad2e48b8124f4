//! A bare HTTP/1.1 client (hyper), plain or TLS, for tests that read what a browser would not
//! show: status codes, `Set-Cookie` attributes, security headers, redirects.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio_rustls::rustls;

/// One answer, its body as text.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    /// Every `Set-Cookie` value.
    pub(crate) fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    /// The value `Set-Cookie` gives cookie `name`, if it sets it.
    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().into_iter().find_map(|c| {
            let (pair, _) = c.split_once(';').unwrap_or((&c, ""));
            pair.strip_prefix(&format!("{name}=")).map(str::to_string)
        })
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The `value` of the first `<input name="{name}" …>` in the body.
    pub(crate) fn input_value(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no input {name} in {}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_string()
    }
}

/// Where a request goes: `host:port`, and the TLS client configuration for HTTPS.
#[derive(Clone)]
pub(crate) struct Server {
    pub(crate) authority: String,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

impl Server {
    pub(crate) async fn get(&self, path: &str, cookies: &str) -> Answer {
        self.send("GET", path, cookies, None).await
    }

    /// A form post (`application/x-www-form-urlencoded`).
    pub(crate) async fn post(&self, path: &str, cookies: &str, form: &str) -> Answer {
        self.send("POST", path, cookies, Some(form)).await
    }

    async fn send(&self, method: &str, path: &str, cookies: &str, form: Option<&str>) -> Answer {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .unwrap();
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority);
        if !cookies.is_empty() {
            request = request.header("cookie", cookies);
        }
        if form.is_some() {
            request = request.header("content-type", "application/x-www-form-urlencoded");
        }
        let request = request
            .body(Full::new(Bytes::from(form.unwrap_or_default().to_string())))
            .unwrap();
        let response = match &self.tls {
            None => {
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                sender.send_request(request).await.unwrap()
            }
            Some(config) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let stream = connector.connect(name, stream).await.unwrap();
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                sender.send_request(request).await.unwrap()
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}
