//! The channel form, shared by the create form on the channel list and the edit form on a
//! channel's page (`channel_fields.html`): the fields as typed, turned into the API's JSON
//! for the same validation, and each error put beside its input.
//!
//! The form never shows a secret or a header value. A secret input left empty on an edit
//! keeps the current secret; an edit lists the headers by name as `Name:` lines, and a line
//! with a name alone keeps that header's current value.

use std::collections::{BTreeMap, HashMap};

use cronfleet_common::FieldError;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::notify::channel::Target;
use crate::notify::channel_store::ChannelView;

/// The inputs of the channel form, as typed.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct ChannelForm {
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) url: String,
    /// Read from the post, never written back into a page.
    #[serde(default)]
    pub(super) secret: String,
    /// One `Name: value` a line.
    #[serde(default)]
    pub(super) headers: String,
    /// One address a line.
    #[serde(default)]
    pub(super) recipients: String,
}

/// Errors by the input they belong to (`name`, `kind`, `url`, `secret`, `headers`,
/// `recipients`, or `form` for the form as a whole).
pub(super) type FormErrors = HashMap<&'static str, String>;

impl ChannelForm {
    /// A new webhook channel's empty form.
    pub(super) fn blank() -> Self {
        Self {
            kind: "webhook".into(),
            ..Self::default()
        }
    }

    /// The edit form of a channel as shown: its headers by name, with no value.
    pub(super) fn from_view(view: &ChannelView) -> Self {
        let strings = |key: &str| -> Vec<String> {
            view.target[key]
                .as_array()
                .map(|items| {
                    let texts = items.iter().filter_map(Value::as_str);
                    texts.map(str::to_owned).collect()
                })
                .unwrap_or_default()
        };
        let lines = |items: Vec<String>, suffix: &str| -> String {
            items.iter().map(|i| format!("{i}{suffix}\n")).collect()
        };
        Self {
            name: view.name.clone(),
            kind: view.target["kind"].as_str().unwrap_or_default().to_owned(),
            url: view.target["url"].as_str().unwrap_or_default().to_owned(),
            secret: String::new(),
            headers: lines(strings("headers"), ":"),
            recipients: lines(strings("recipients"), ""),
        }
    }

    /// The API's JSON for this form. `current` is the edited channel's target, whose header
    /// values a `Name:` line keeps. Only the inputs of the chosen kind are sent.
    pub(super) fn json(&self, current: Option<&Target>) -> Result<Value, FieldError> {
        let mut body = Map::new();
        body.insert("name".into(), json!(self.name.trim()));
        body.insert("kind".into(), json!(self.kind));
        match self.kind.as_str() {
            "webhook" => {
                body.insert("url".into(), json!(self.url.trim()));
                if !self.secret.is_empty() {
                    body.insert("secret".into(), json!(self.secret));
                }
                // Stored values are kept only for the same origin: pointing the URL elsewhere
                // must not carry credentials in headers to the new host unseen.
                let kept = match current {
                    Some(Target::Webhook { headers, url }) if same_origin(url, self.url.trim()) => {
                        headers.clone()
                    }
                    _ => BTreeMap::new(),
                };
                body.insert("headers".into(), json!(headers(&self.headers, &kept)?));
            }
            "email" => {
                let recipients: Vec<&str> = lines(&self.recipients).collect();
                body.insert("recipients".into(), json!(recipients));
            }
            _ => {}
        }
        Ok(Value::Object(body))
    }
}

fn same_origin(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// The headers from their `Name: value` lines; `Name:` alone keeps the value in `kept`.
fn headers(
    text: &str,
    kept: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, FieldError> {
    let mut headers = BTreeMap::new();
    for line in lines(text) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(FieldError::new(
                "headers",
                format!("{line:?} is not Name: value"),
            ));
        };
        let (name, value) = (name.trim(), value.trim());
        let value = match kept.get(&name.to_ascii_lowercase()) {
            Some(current) if value.is_empty() => current.clone(),
            _ if value.is_empty() => {
                return Err(FieldError::new(
                    format!("headers.{name}"),
                    "has no value (a name alone keeps the value of a header the channel has, \
                     while the URL stays on the same scheme, host and port)",
                ))
            }
            _ => value.to_owned(),
        };
        headers.insert(name.to_owned(), value);
    }
    Ok(headers)
}

/// The input a field of the API's validation belongs to.
pub(super) fn input_of(field: &str) -> &'static str {
    let head = field.split(['.', '[']).next().unwrap_or_default();
    match head {
        "name" => "name",
        "kind" => "kind",
        "url" => "url",
        "secret" => "secret",
        "headers" => "headers",
        "recipients" => "recipients",
        _ => "form",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::channel::ChannelInput;

    fn hook(headers: &str) -> ChannelForm {
        ChannelForm {
            name: " ops ".into(),
            kind: "webhook".into(),
            url: "https://hooks.example.com/x".into(),
            secret: "0123456789abcdef".into(),
            headers: headers.into(),
            recipients: "ignored@example.com".into(),
        }
    }

    fn parsed(form: &ChannelForm, current: Option<&Target>) -> Result<ChannelInput, String> {
        let value = form.json(current).map_err(|e| e.field.clone())?;
        ChannelInput::from_json(value, false).map_err(|e| e.field)
    }

    #[test]
    fn a_webhook_form_keeps_named_headers_and_drops_the_other_kinds_inputs() {
        let current = Target::Webhook {
            url: "https://hooks.example.com/old-path".into(),
            headers: BTreeMap::from([("authorization".into(), "Bearer old".into())]),
        };
        // Pointed at another host, a kept header would go there unseen: its value is asked for.
        let elsewhere = Target::Webhook {
            url: "https://old.example/x".into(),
            headers: BTreeMap::from([("authorization".into(), "Bearer old".into())]),
        };
        assert_eq!(
            parsed(&hook("Authorization:"), Some(&elsewhere)),
            Err("headers.Authorization".into())
        );
        let form = hook("Authorization:\r\nX-Team: ops\n\n");
        let input = parsed(&form, Some(&current)).unwrap();
        assert_eq!(input.name.as_str(), "ops");
        let Target::Webhook { headers, .. } = input.target else {
            panic!("a webhook")
        };
        assert_eq!(headers["authorization"], "Bearer old");
        assert_eq!(headers["x-team"], "ops");
        assert_eq!(
            parsed(&hook("X-New:"), Some(&current)),
            Err("headers.X-New".into())
        );
        assert_eq!(parsed(&hook("no colon"), None), Err("headers".into()));
    }

    #[test]
    fn an_email_form_lists_recipients_one_a_line() {
        let form = ChannelForm {
            name: "mail".into(),
            kind: "email".into(),
            url: "https://ignored.example".into(),
            recipients: "a@example.com\r\n\nb@example.com\n".into(),
            ..ChannelForm::default()
        };
        let input = parsed(&form, None).unwrap();
        assert_eq!(
            input.target,
            Target::Email {
                recipients: vec!["a@example.com".into(), "b@example.com".into()]
            }
        );
        let bad = ChannelForm {
            recipients: "a@example.com\nnot an address".into(),
            ..form
        };
        assert_eq!(input_of(&parsed(&bad, None).unwrap_err()), "recipients");
    }

    #[test]
    fn fields_map_to_their_inputs() {
        for (field, input) in [
            ("headers.X-A", "headers"),
            ("recipients[3]", "recipients"),
            ("url", "url"),
            ("body", "form"),
        ] {
            assert_eq!(input_of(field), input);
        }
    }
}
