//! A real headless Chromium, driven over WebDriver, for tests of what a person sees in a browser:
//! the web console and the HTML reports.
//!
//! Debian's `chromium` and `chromium-driver` packages provide the two programs (`.ci/run`
//! installs them); `DROIDFLEET_CHROMIUM` and `DROIDFLEET_CHROMEDRIVER` point elsewhere. A missing
//! browser fails the test with what to install: a browser test never passes by being skipped.
//! Each `Browser` has its own `chromedriver` child process (ended by its PID when dropped) and a
//! fresh profile directory, and Chromium gets the flags that keep it from reaching for the
//! network, which this machine's closed network answers with long stalls.

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The longest a browser may take to start.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Flags for a headless Chromium on a machine without outside network: without the
/// background-networking ones it stalls on connections the network refuses.
const CHROMIUM_FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
];

pub(crate) struct Browser {
    pub(crate) client: Client,
    /// The chromedriver child; killed by its PID when the browser is dropped.
    driver: Child,
    /// The fresh profile Chromium runs with, removed when the browser is dropped.
    _profile: tempfile::TempDir,
}

fn program(variable: &str, default: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "browser tests need {} (set {variable}, or install Debian's {package} package: \
         apt-get install chromium chromium-driver)",
        path.display()
    );
    path
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session.
    pub(crate) async fn start() -> Browser {
        let chromium = program("DROIDFLEET_CHROMIUM", "/usr/bin/chromium", "chromium");
        let chromedriver = program(
            "DROIDFLEET_CHROMEDRIVER",
            "/usr/bin/chromedriver",
            "chromium-driver",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        // chromedriver says on stdout when it listens; reading that line is the event to wait on.
        let stdout = driver.stdout.take().expect("piped stdout");
        let ready = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            lines.any(|line| line.is_ok_and(|l| l.contains("started successfully")))
        });
        let ready = tokio::time::timeout(START_DEADLINE, ready).await;
        assert!(
            matches!(ready, Ok(Ok(true))),
            "chromedriver did not start on port {port}"
        );
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": args,
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities);
        let address = format!("http://127.0.0.1:{port}");
        let connect = builder.connect(&address);
        let client = tokio::time::timeout(START_DEADLINE, connect)
            .await
            .expect("Chromium starts in time")
            .expect("a WebDriver session with Chromium");
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Waits (a WebDriver wait, up to the tests' deadline) until an element matches `css`.
    pub(crate) async fn wait_for(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(super::DEADLINE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element matches {css} in time: {e}"))
    }

    /// The text of the element `css` matches (which must exist now). On a live page the element
    /// may be redrawn between finding and reading it: it is then found again, until the tests'
    /// deadline.
    pub(crate) async fn text(&self, css: &str) -> String {
        let until = tokio::time::Instant::now() + super::DEADLINE;
        loop {
            let element = self
                .client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no element matches {css}: {e}"));
            match element.text().await {
                Ok(text) => return text,
                Err(e) if e.is_stale_element_reference() && tokio::time::Instant::now() < until => {
                }
                Err(e) => panic!("cannot read the text of {css}: {e}"),
            }
        }
    }

    /// Whether any element matches `css` now.
    pub(crate) async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    /// Clicks the element `css` matches, waiting for it first. Live pages (the walls) redraw
    /// on every sample, so an element found just before a redraw is stale by the click: it is
    /// found again, until the tests' deadline.
    pub(crate) async fn click(&self, css: &str) {
        let until = tokio::time::Instant::now() + super::DEADLINE;
        loop {
            match self.wait_for(css).await.click().await {
                Ok(()) => return,
                Err(e) if e.is_stale_element_reference() && tokio::time::Instant::now() < until => {
                }
                Err(e) => panic!("cannot click {css}: {e}"),
            }
        }
    }

    /// The page's HTML as the browser holds it now.
    pub(crate) async fn html(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// With `DROIDFLEET_SCREENSHOTS=DIR` set, writes the whole page as `DIR/<name>.png` (the
    /// window grown to the page's height first); does nothing otherwise. The README's pictures
    /// are made this way.
    pub(crate) async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("DROIDFLEET_SCREENSHOTS") else {
            return;
        };
        let height = self
            .client
            .execute("return document.documentElement.scrollHeight", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(900)
            .clamp(400, 4000);
        self.client
            .set_window_size(1280, height as u32 + 160)
            .await
            .unwrap();
        let png = self.client.screenshot().await.unwrap();
        let path = PathBuf::from(dir).join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.client.set_window_size(1280, 900).await.unwrap();
    }

    /// Ends the session (Chromium exits) and chromedriver.
    pub(crate) async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Killing chromedriver by its PID also ends the Chromium it started.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
