//! Input no handler should see, refused before routing with an error that names what is wrong:
//! a NUL byte in a query parameter (400; PostgreSQL cannot store one), an API body that is not
//! `application/json` (415), and a JSON body with a duplicate key or a NUL byte in a string
//! (422; a duplicate would otherwise silently win over the first).

use std::collections::HashSet;
use std::fmt;

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::HttpError;

pub async fn refuse_bad_input(request: Request, next: Next) -> Response {
    if let Some(query) = request.uri().query() {
        if let Err(error) = check_query(query) {
            return error.into_response();
        }
    }
    let api_write = request.uri().path().starts_with("/api/")
        && matches!(
            *request.method(),
            Method::POST | Method::PUT | Method::PATCH
        );
    if !api_write {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, super::MAX_BODY_BYTES).await else {
        return HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is over {} bytes", super::MAX_BODY_BYTES),
        )
        .into_response();
    };
    if !bytes.is_empty() {
        if let Err(error) = check_body(&parts.headers, &bytes) {
            return error.into_response();
        }
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// No NUL byte in a query parameter's name or value.
fn check_query(query: &str) -> Result<(), HttpError> {
    let nul = form_urlencoded_pairs(query)
        .find(|(key, value)| key.contains('\0') || value.contains('\0'));
    match nul {
        Some((key, _)) => {
            let name = key.replace('\0', "\\0");
            Err(HttpError::field(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                name.clone(),
                format!("query parameter {name:?} contains a NUL byte"),
            ))
        }
        None => Ok(()),
    }
}

/// A body is JSON, and none of its strings or keys is hostile ([`Checked`]).
fn check_body(headers: &axum::http::HeaderMap, bytes: &[u8]) -> Result<(), HttpError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let Err(e) = (Checked {
        path: String::new(),
    })
    .deserialize(&mut deserializer) else {
        return Ok(());
    };
    let message = e.to_string();
    // Only our own findings name a field; a syntax error is the handler's to report.
    match message
        .split_once(": ")
        .filter(|_| message.starts_with('$'))
    {
        Some((field, reason)) => Err(HttpError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            field.trim_start_matches("$.").to_owned(),
            reason
                .split(" at line ")
                .next()
                .unwrap_or(reason)
                .to_owned(),
        )),
        None => Ok(()),
    }
}

fn form_urlencoded_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
}

/// Percent-decodes one query component (`+` is a space), lossily.
fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Walks a JSON document, failing on a duplicate object key or a NUL byte in a string; the
/// error message starts with the JSON path (`$.env.A`).
struct Checked {
    path: String,
}

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<(), E> {
        if value.contains('\0') {
            return Err(E::custom(format!(
                "${}: must not contain a NUL byte",
                self.path
            )));
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while seq
            .next_element_seed(Checked {
                path: format!("{}[{index}]", self.path),
            })?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = format!("{}.{key}", self.path);
            if key.contains('\0') {
                return Err(serde::de::Error::custom(format!(
                    "${path}: a key must not contain a NUL byte"
                )));
            }
            if !seen.insert(key) {
                return Err(serde::de::Error::custom(format!(
                    "${path}: appears twice in the same object"
                )));
            }
            map.next_value_seed(Checked { path })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<(), String> {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        (Checked {
            path: String::new(),
        })
        .deserialize(&mut deserializer)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn duplicate_keys_and_nul_bytes_are_found_with_their_path() {
        assert!(check(r#"{"a":1,"env":{"X":"y"},"list":[1,{"b":2}]}"#).is_ok());
        let duplicate = check(r#"{"env":{"X":"1","X":"2"}}"#).unwrap_err();
        assert!(
            duplicate.starts_with("$.env.X: appears twice"),
            "{duplicate}"
        );
        let nul = check(r#"{"description":"a\u0000b"}"#).unwrap_err();
        assert!(
            nul.starts_with("$.description: must not contain a NUL"),
            "{nul}"
        );
        let nested = check(r#"{"list":[{"k":"\u0000"}]}"#).unwrap_err();
        assert!(nested.starts_with("$.list[0].k:"), "{nested}");
    }

    #[test]
    fn query_components_decode_percent_escapes_and_plus() {
        assert_eq!(decode("a%00b"), "a\0b");
        assert_eq!(decode("a+b%20c"), "a b c");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
