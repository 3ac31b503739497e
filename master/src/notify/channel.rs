//! A notification channel as an admin defines it: a signed webhook or a list of e-mail
//! recipients. Parsing and validation only (no IO); every error names its field.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;

use cronfleet_common::job::{optional, reject_unknown_fields};
use cronfleet_common::{ChannelName, FieldError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Shortest and longest accepted webhook secret, in bytes.
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 16..=256;
/// Most extra headers one webhook may send, and the longest value.
const MAX_HEADERS: usize = 16;
const MAX_HEADER_VALUE_BYTES: usize = 1024;
/// Most recipients of one e-mail channel.
const MAX_RECIPIENTS: usize = 20;
const MAX_URL_BYTES: usize = 2048;

/// Headers the master sets itself; a channel may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "idempotency-key",
];

/// Where a channel delivers. The webhook's secret is kept beside it, never in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Target {
    Webhook {
        url: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
    },
    Email {
        recipients: Vec<String>,
    },
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Webhook { .. } => "webhook",
            Target::Email { .. } => "email",
        }
    }

    /// What the audit log and the pages show: header names, never their values.
    pub fn public(&self) -> Value {
        match self {
            Target::Webhook { url, headers } => json!({
                "kind": "webhook",
                "url": url,
                "headers": headers.keys().collect::<Vec<_>>(),
            }),
            Target::Email { recipients } => json!({"kind": "email", "recipients": recipients}),
        }
    }
}

/// A channel as written through the API or the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInput {
    pub name: ChannelName,
    pub target: Target,
    /// The webhook's HMAC key; `None` on an update keeps the current one.
    pub secret: Option<String>,
}

const FIELDS: &[&str] = &["name", "kind", "url", "secret", "headers", "recipients"];

impl ChannelInput {
    /// Parses a channel from JSON; `allow_link_local` is the master's setting.
    pub fn from_json(value: Value, allow_link_local: bool) -> Result<Self, FieldError> {
        let Value::Object(mut object) = value else {
            return Err(FieldError::new("body", "must be a JSON object"));
        };
        reject_unknown_fields(&object, FIELDS)?;
        let name: String =
            optional(&mut object, "name")?.ok_or_else(|| FieldError::new("name", "is required"))?;
        let name = ChannelName::parse(&name, "name")?;
        let kind: String =
            optional(&mut object, "kind")?.ok_or_else(|| FieldError::new("kind", "is required"))?;
        let (target, secret) = match kind.as_str() {
            "webhook" => webhook(&mut object, allow_link_local)?,
            "email" => (email(&mut object)?, None),
            other => {
                return Err(FieldError::new(
                    "kind",
                    format!("{other:?} is not one of webhook, email"),
                ))
            }
        };
        if let Some(field) = object.keys().next() {
            return Err(FieldError::new(
                field.as_str(),
                format!("does not apply to a {kind} channel"),
            ));
        }
        Ok(Self {
            name,
            target,
            secret,
        })
    }
}

fn webhook(
    object: &mut Map<String, Value>,
    allow_link_local: bool,
) -> Result<(Target, Option<String>), FieldError> {
    let url: String =
        optional(object, "url")?.ok_or_else(|| FieldError::new("url", "is required"))?;
    check_url(&url, allow_link_local)?;
    let secret: Option<String> = optional(object, "secret")?;
    if let Some(secret) = &secret {
        if !SECRET_BYTES.contains(&secret.len()) {
            return Err(FieldError::new(
                "secret",
                format!(
                    "must be {}-{} bytes (it keys the HMAC-SHA256 signature)",
                    SECRET_BYTES.start(),
                    SECRET_BYTES.end()
                ),
            ));
        }
    }
    let headers: BTreeMap<String, String> = optional(object, "headers")?.unwrap_or_default();
    if headers.len() > MAX_HEADERS {
        return Err(FieldError::new(
            "headers",
            format!("at most {MAX_HEADERS} headers are allowed"),
        ));
    }
    let mut lowered = BTreeMap::new();
    for (name, value) in headers {
        let field = format!("headers.{name}");
        let lower = name.to_ascii_lowercase();
        if reqwest::header::HeaderName::from_str(&lower).is_err() {
            return Err(FieldError::new(field, "is not a valid header name"));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-cronfleet-") {
            return Err(FieldError::new(field, "is set by cronfleet itself"));
        }
        if value.len() > MAX_HEADER_VALUE_BYTES
            || reqwest::header::HeaderValue::from_str(&value).is_err()
        {
            return Err(FieldError::new(
                field,
                format!("value must be at most {MAX_HEADER_VALUE_BYTES} bytes of visible text"),
            ));
        }
        lowered.insert(lower, value);
    }
    Ok((
        Target::Webhook {
            url,
            headers: lowered,
        },
        secret,
    ))
}

/// Checks a webhook URL: http(s), a host, no credentials, and not a link-local or metadata
/// address unless allowed. Names are checked again, resolved, when a delivery connects.
pub fn check_url(url: &str, allow_link_local: bool) -> Result<(), FieldError> {
    if url.len() > MAX_URL_BYTES {
        return Err(FieldError::new(
            "url",
            format!("is longer than {MAX_URL_BYTES} bytes"),
        ));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| FieldError::new("url", format!("is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FieldError::new("url", "must be an http:// or https:// URL"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(FieldError::new(
            "url",
            "must not carry credentials; send them in a header",
        ));
    }
    let Some(host) = parsed.host_str().filter(|host| !host.is_empty()) else {
        return Err(FieldError::new("url", "has no host"));
    };
    if allow_link_local {
        return Ok(());
    }
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let refused = match literal.parse::<IpAddr>() {
        Ok(ip) => forbidden(ip),
        Err(_) => is_metadata_name(host),
    };
    if refused {
        return Err(FieldError::new(
            "url",
            "points at a link-local or cloud metadata address, which the master does not call \
             (an admin may allow it with --webhook-allow-link-local)",
        ));
    }
    Ok(())
}

/// Host names of cloud metadata services.
pub fn is_metadata_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    matches!(
        name.as_str(),
        "metadata" | "metadata.google.internal" | "instance-data" | "metadata.azure.internal"
    )
}

/// Link-local and cloud metadata addresses: refused as webhook destinations by default.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_link_local() || ip.octets() == [100, 100, 100, 200],
        IpAddr::V6(ip) => {
            let s = ip.segments();
            let v4 = |high: u16, low: u16| {
                let [a, b] = high.to_be_bytes();
                let [c, d] = low.to_be_bytes();
                std::net::Ipv4Addr::new(a, b, c, d)
            };
            // IPv4 inside IPv6: mapped and compatible (::ffff:a.b.c.d, ::a.b.c.d), NAT64
            // (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they carry.
            let mapped = s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0);
            let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            let embedded = if mapped || nat64 {
                Some(v4(s[6], s[7]))
            } else if s[0] == 0x2002 {
                Some(v4(s[1], s[2]))
            } else {
                None
            };
            if embedded.is_some_and(|v4| forbidden(IpAddr::V4(v4))) {
                return true;
            }
            (s[0] & 0xffc0) == 0xfe80 || s == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254]
        }
    }
}

fn email(object: &mut Map<String, Value>) -> Result<Target, FieldError> {
    let recipients: Vec<String> = optional(object, "recipients")?
        .ok_or_else(|| FieldError::new("recipients", "is required"))?;
    if recipients.is_empty() || recipients.len() > MAX_RECIPIENTS {
        return Err(FieldError::new(
            "recipients",
            format!("must list 1-{MAX_RECIPIENTS} addresses"),
        ));
    }
    for (i, address) in recipients.iter().enumerate() {
        if lettre::Address::from_str(address).is_err() {
            return Err(FieldError::new(
                format!("recipients[{i}]"),
                format!("{address:?} is not an e-mail address"),
            ));
        }
    }
    Ok(Target::Email { recipients })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(value: Value) -> String {
        ChannelInput::from_json(value, false).unwrap_err().field
    }

    #[test]
    fn a_webhook_and_an_email_channel_parse() {
        let hook = ChannelInput::from_json(
            json!({"name": "ops", "kind": "webhook", "url": "https://hooks.example.com/x",
                   "secret": "0123456789abcdef", "headers": {"Authorization": "Bearer t"}}),
            false,
        )
        .unwrap();
        assert_eq!(hook.target.kind(), "webhook");
        assert_eq!(hook.target.public()["headers"], json!(["authorization"]));
        let mail = ChannelInput::from_json(
            json!({"name": "mail", "kind": "email", "recipients": ["ops@example.com"]}),
            false,
        )
        .unwrap();
        assert_eq!(mail.secret, None);
    }

    #[test]
    fn bad_channels_name_the_field() {
        let hook = |extra: Value| {
            let mut base = json!({"name": "ops", "kind": "webhook", "url": "https://h.example/x",
                                  "secret": "0123456789abcdef"});
            for (k, v) in extra.as_object().unwrap() {
                base[k] = v.clone();
            }
            base
        };
        assert_eq!(field(json!({"kind": "webhook"})), "name");
        assert_eq!(field(json!({"name": "ops", "kind": "pager"})), "kind");
        assert_eq!(field(hook(json!({"url": "ftp://h/x"}))), "url");
        assert_eq!(field(hook(json!({"url": "http://u:p@h/x"}))), "url");
        assert_eq!(
            field(hook(json!({"url": "http://169.254.169.254/latest"}))),
            "url"
        );
        assert_eq!(field(hook(json!({"url": "http://[fe80::1]/x"}))), "url");
        assert_eq!(
            field(hook(json!({"url": "http://metadata.google.internal/"}))),
            "url"
        );
        assert_eq!(field(hook(json!({"secret": "short"}))), "secret");
        assert_eq!(
            field(hook(json!({"headers": {"Host": "x"}}))),
            "headers.Host"
        );
        assert_eq!(
            field(hook(json!({"headers": {"X-A": "line\r\nbreak"}}))),
            "headers.X-A"
        );
        assert_eq!(field(hook(json!({"recipients": ["a@b.c"]}))), "recipients");
        assert_eq!(
            field(json!({"name": "m", "kind": "email", "recipients": ["not an address"]})),
            "recipients[0]"
        );
        assert_eq!(
            field(json!({"name": "m", "kind": "email", "recipients": []})),
            "recipients"
        );
    }

    #[test]
    fn loopback_and_private_addresses_are_allowed_link_local_only_when_told() {
        assert!(check_url("http://127.0.0.1:9000/hook", false).is_ok());
        assert!(check_url("http://10.1.2.3/hook", false).is_ok());
        assert!(check_url("http://169.254.169.254/", true).is_ok());
        assert!(forbidden("::ffff:169.254.169.254".parse().unwrap()));
        assert!(forbidden("::a9fe:a9fe".parse().unwrap()));
        assert!(forbidden("64:ff9b::a9fe:a9fe".parse().unwrap()));
        assert!(forbidden("2002:a9fe:a9fe::1".parse().unwrap()));
        assert!(!forbidden("::1".parse().unwrap()));
        assert!(
            check_url("http://2852039166/", false).is_err(),
            "169.254.169.254 spelled as a number"
        );
        assert!(forbidden("fd00:ec2::254".parse().unwrap()));
        assert!(forbidden("100.100.100.200".parse().unwrap()));
        assert!(!forbidden("100.100.100.201".parse().unwrap()));
    }
}
