//! The master's REST API as the CLI calls it: where it is and who calls (flags, then the
//! environment, then the file `cronfleet login` writes), and what each answer means for the
//! exit code.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a command failed, and the exit code a script sees for it.
#[derive(Debug)]
pub enum Failure {
    /// The master refused the request (4xx but 404 and 409): bad input, no permission.
    Refused(String),
    /// What the command names does not exist (404).
    NotFound(String),
    /// Someone changed it first (409): a version conflict, a name taken.
    Conflict(String),
    /// The master could not be reached, or could not answer (5xx, 503).
    Unavailable(String),
    /// The command line or a file it names is wrong (before anything was sent).
    Usage(String),
    /// A run that was followed ended in any way but `succeeded`.
    RunFailed(String),
}

impl Failure {
    /// The process exit code: 1 refused, 2 usage, 3 not found, 4 conflict, 5 master
    /// unavailable, 6 the followed run did not succeed.
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Refused(_) => 1,
            Failure::Usage(_) => 2,
            Failure::NotFound(_) => 3,
            Failure::Conflict(_) => 4,
            Failure::Unavailable(_) => 5,
            Failure::RunFailed(_) => 6,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused(m)
            | Failure::NotFound(m)
            | Failure::Conflict(m)
            | Failure::Unavailable(m)
            | Failure::Usage(m)
            | Failure::RunFailed(m) => f.write_str(m),
        }
    }
}

/// What `cronfleet login` keeps (mode 0600).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    pub url: Option<String>,
    pub token: Option<String>,
}

/// `$CRONFLEET_CONFIG`, else `$XDG_CONFIG_HOME/cronfleet/config.json`, else
/// `~/.config/cronfleet/config.json`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CRONFLEET_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("cronfleet").join("config.json"))
}

impl Saved {
    pub fn load() -> Result<Self, Failure> {
        let Some(path) = config_path() else {
            return Ok(Self::default());
        };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Failure::Usage(format!(
                    "{}: not a cronfleet config file: {e}",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Failure::Usage(format!("{}: {e}", path.display()))),
        }
    }

    /// Writes the file readable by its owner only (the token is a secret).
    pub fn store(&self) -> Result<PathBuf, Failure> {
        let path = config_path().ok_or_else(|| {
            Failure::Usage("no HOME to keep the config in; set CRONFLEET_CONFIG".into())
        })?;
        let io = |e: std::io::Error| Failure::Usage(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        let text = serde_json::to_vec_pretty(self).map_err(|e| Failure::Usage(e.to_string()))?;
        file.write_all(&text).map_err(io)?;
        Ok(path)
    }
}

/// A client of one master.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `…/api/v1`.
    api: String,
    token: String,
}

/// An answer: its body and, for a job, its ETag as a version.
#[derive(Debug)]
pub struct Answer {
    pub body: Value,
    pub version: Option<i64>,
}

impl Client {
    /// The master at `url` (its root, as users open it), calling with `token`.
    pub fn new(url: &str, token: &str) -> Result<Self, Failure> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Failure::Usage(format!("the HTTP client: {e}")))?;
        Ok(Self {
            http,
            api: format!("{}/api/v1", url.trim_end_matches('/')),
            token: token.to_owned(),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        Ok(self.call(Method::GET, path, None, None).await?.body)
    }

    /// `method` on `/api/v1<path>` with a JSON body and `If-Match: "<version>"`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<i64>,
    ) -> Result<Answer, Failure> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        if let Some(version) = if_match {
            request = request.header("if-match", format!("\"{version}\""));
        }
        let response = request.send().await.map_err(|e| {
            Failure::Unavailable(format!("cannot reach the master at {}: {e}", self.api))
        })?;
        let status = response.status();
        let version = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_matches('"').parse().ok());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Failure::Unavailable(format!("reading the master's answer: {e}")))?;
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if status.is_success() {
            return Ok(Answer { body, version });
        }
        let message = body["error"]["message"]
            .as_str()
            .map_or_else(|| format!("the master answered {status}"), str::to_owned);
        Err(match status {
            StatusCode::NOT_FOUND => Failure::NotFound(message),
            StatusCode::CONFLICT => Failure::Conflict(message),
            s if s.is_server_error() => Failure::Unavailable(message),
            _ => Failure::Refused(message),
        })
    }

    /// Every item of a list the API pages with `cursor`/`nextCursor`.
    pub async fn all(&self, path: &str) -> Result<Vec<Value>, Failure> {
        let join = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page_path = match &cursor {
                Some(c) => format!("{path}{join}limit=500&cursor={}", encode(c)),
                None => format!("{path}{join}limit=500"),
            };
            let page = self.get(&page_path).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(items),
            }
        }
    }
}

/// The API path of a job.
pub fn job_path(name: &str) -> String {
    format!("/jobs/{}", encode(name))
}

/// Percent-encodes a path segment or query value.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
