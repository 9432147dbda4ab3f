//! Headless Chromium driven through chromedriver (WebDriver), for the console tests. Both
//! programs come from Debian's `chromium` and `chromium-driver` packages (`make browser`);
//! chromedriver picks its own port, and is killed, with the browser it started, on drop.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use fantoccini::{Client, ClientBuilder, Locator};

/// Where the programs are: `$HOOKD_CHROMEDRIVER` / `$HOOKD_CHROMIUM` (the Makefile sets
/// them), else Debian's paths.
fn program(var: &str, default: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    anyhow::ensure!(
        path.is_file(),
        "{} not found (from {var}); run `make browser` to install Debian's chromium and chromium-driver",
        path.display()
    );
    Ok(path)
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    /// Every URL the browser was at after a navigation, to check none carries a token.
    pub visited: Vec<String>,
    shots: PathBuf,
}

impl Browser {
    pub async fn start() -> anyhow::Result<Self> {
        let chromedriver = program("HOOKD_CHROMEDRIVER", "/usr/bin/chromedriver")?;
        let chromium = program("HOOKD_CHROMIUM", "/usr/bin/chromium")?;
        let mut driver = Command::new(&chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", chromedriver.display()))?;
        let stdout = driver.stdout.take().context("chromedriver stdout")?;
        // "ChromeDriver was started successfully on port 38761."
        let port = tokio::task::spawn_blocking(move || -> anyhow::Result<u16> {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let line = line?;
                if let Some(rest) = line.split("on port ").nth(1)
                    && line.contains("started successfully")
                {
                    let port = rest.trim_end_matches('.').trim().parse()?;
                    // Keep draining so chromedriver never blocks on a full pipe.
                    std::thread::spawn(move || for _ in lines {});
                    return Ok(port);
                }
            }
            anyhow::bail!("chromedriver exited before it was ready")
        });
        let port = match tokio::time::timeout(Duration::from_secs(20), port).await {
            Ok(Ok(Ok(port))) => port,
            other => {
                let _ = driver.kill();
                let _ = driver.wait();
                anyhow::bail!("chromedriver did not start: {other:?}");
            }
        };
        let profile = tempfile::Builder::new().prefix("hookd-chromium-").tempdir()?;
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        args.push("--lang=en-US".to_owned());
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({ "binary": chromium.display().to_string(), "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = match ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => client,
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                anyhow::bail!("cannot open a Chromium session: {e}");
            }
        };
        let shots = screenshot_dir()?;
        Ok(Self { client, driver, _profile: profile, visited: Vec::new(), shots })
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&mut self, url: &str) -> anyhow::Result<()> {
        self.client.goto(url).await?;
        self.note_url().await
    }

    /// Records where the browser is now (after a click that navigated).
    pub async fn note_url(&mut self) -> anyhow::Result<()> {
        let url = self.client.current_url().await?.to_string();
        self.visited.push(url);
        Ok(())
    }

    pub async fn path(&self) -> anyhow::Result<String> {
        Ok(self.client.current_url().await?.path().to_owned())
    }

    pub async fn source(&self) -> anyhow::Result<String> {
        Ok(self.client.source().await?)
    }

    /// The visible text of the page's `main`.
    pub async fn text(&self) -> anyhow::Result<String> {
        Ok(self.client.find(Locator::Css("main")).await?.text().await?)
    }

    pub async fn exists(&self, css: &str) -> anyhow::Result<bool> {
        Ok(!self.client.find_all(Locator::Css(css)).await?.is_empty())
    }

    pub async fn fill(&self, css: &str, value: &str) -> anyhow::Result<()> {
        let input =
            self.client.find(Locator::Css(css)).await.with_context(|| format!("no {css}"))?;
        self.client
            .execute(
                "arguments[0].scrollIntoView({block: 'center'});",
                vec![serde_json::to_value(&input)?],
            )
            .await?;
        input.clear().await?;
        input.send_keys(value).await?;
        Ok(())
    }

    /// Clicks what `css` finds, on this page (a radio button, a checkbox).
    pub async fn click(&mut self, css: &str) -> anyhow::Result<()> {
        let element =
            self.client.find(Locator::Css(css)).await.with_context(|| format!("no {css}"))?;
        self.press(element, false).await
    }

    /// Clicks the link or button `css` finds and waits for the page it leads to.
    pub async fn click_to(&mut self, css: &str) -> anyhow::Result<()> {
        let element =
            self.client.find(Locator::Css(css)).await.with_context(|| format!("no {css}"))?;
        self.press(element, true).await
    }

    /// Clicks `element` once it is scrolled to the middle of the window (where no sticky bar
    /// covers it), as a person would; with `navigates`, waits until the next page has loaded
    /// (a marker set on this page is gone and the new one is complete).
    async fn press(
        &mut self,
        element: fantoccini::elements::Element,
        navigates: bool,
    ) -> anyhow::Result<()> {
        self.client
            .execute(
                "arguments[0].scrollIntoView({block: 'center'}); window.__hookdOldPage = true;",
                vec![serde_json::to_value(&element)?],
            )
            .await?;
        element.click().await?;
        if navigates {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let loaded = self
                    .client
                    .execute(
                        "return !window.__hookdOldPage && document.readyState === 'complete';",
                        vec![],
                    )
                    .await
                    .ok()
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                if loaded {
                    break;
                }
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "the click led to no new page"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.note_url().await
    }

    /// Clicks the button or link whose text is `text` (exactly, trimmed).
    pub async fn click_text(&mut self, text: &str) -> anyhow::Result<()> {
        let xpath = format!(
            "//*[self::button or self::a][normalize-space(.)={}]",
            serde_json::Value::from(text)
        );
        let element = self
            .client
            .find(Locator::XPath(&xpath))
            .await
            .with_context(|| format!("no button or link {text:?}"))?;
        self.press(element, true).await
    }

    /// Waits until the page's text contains `needle`, reloading it every half second.
    pub async fn wait_for_text(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let text = self.text().await.unwrap_or_default();
            if text.contains(needle) {
                return Ok(text);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the page at {} never showed {needle:?}; it shows:\n{text}",
                self.client.current_url().await?
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.client.refresh().await?;
        }
    }

    /// A screenshot of the page as `name.png` in the screenshots folder.
    pub async fn shot(&self, name: &str) -> anyhow::Result<()> {
        let png = self.client.screenshot().await?;
        std::fs::write(self.shots.join(format!("{name}.png")), png)?;
        Ok(())
    }

    pub async fn resize(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.client.set_window_size(width, height).await?;
        Ok(())
    }

    /// Checks what any page must satisfy: every visible input has a label, nothing is wider
    /// than the window, and keyboard focus can reach the main content.
    pub async fn check_page(&self) -> anyhow::Result<()> {
        let unlabelled = self
            .client
            .execute(
                r#"return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
                    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                    .map(e => e.outerHTML.slice(0, 120));"#,
                vec![],
            )
            .await?;
        anyhow::ensure!(
            unlabelled.as_array().is_some_and(Vec::is_empty),
            "inputs without a label at {}: {unlabelled}",
            self.client.current_url().await?
        );
        let overflow = self
            .client
            .execute("return document.documentElement.scrollWidth - window.innerWidth;", vec![])
            .await?;
        anyhow::ensure!(
            overflow.as_i64().unwrap_or(0) <= 1,
            "the page at {} is {overflow} px wider than the window",
            self.client.current_url().await?
        );
        Ok(())
    }

    /// The value of the session cookie (for hand-made requests with the same session).
    pub async fn cookie(&self, name: &str) -> anyhow::Result<String> {
        Ok(self.client.get_named_cookie(name).await?.value().to_owned())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium's processes are chromedriver's descendants and would outlive it: each is
        // killed by its pid first, then the driver; the profile folder goes last.
        for pid in descendants(self.driver.id()) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Every process below `root`, read from /proc (parents before children).
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after its last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parent_of.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// `$CARGO_TARGET_DIR/console-screenshots`, else next to the test binary's target folder.
fn screenshot_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()?
            .ancestors()
            .nth(3)
            .map(PathBuf::from)
            .context("no target folder above the test binary")?,
    };
    let dir = base.join("console-screenshots");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
