//! What the CLI prints: aligned tables for people, JSON or YAML of the API's answer for
//! scripts (`-o json|yaml`).

use clap::ValueEnum;
use serde_json::Value;

use crate::client::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Prints a command's output: standard output is what the command answers.
#[allow(clippy::print_stdout)]
pub fn say(text: &str) {
    if text.ends_with('\n') {
        print!("{text}");
    } else {
        println!("{text}");
    }
}

/// `value` as JSON or YAML; `None` for a table, which the caller draws.
pub fn document(value: &Value, format: Format) -> Result<Option<String>, Failure> {
    match format {
        Format::Table => Ok(None),
        Format::Json => serde_json::to_string_pretty(value)
            .map(Some)
            .map_err(|e| Failure::Usage(e.to_string())),
        Format::Yaml => serde_yaml::to_string(value)
            .map(Some)
            .map_err(|e| Failure::Usage(e.to_string())),
    }
}

/// Columns padded to their widest cell, two spaces apart, the header first.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A list answer's items as a table: each column a header and the field it shows.
pub fn columns(body: &Value, columns: &[(&str, &str)]) -> String {
    let headers: Vec<&str> = columns.iter().map(|(header, _)| *header).collect();
    let rows: Vec<Vec<String>> = items(body)
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|(_, field)| cell(&item[*field]))
                .collect()
        })
        .collect();
    table(&headers, &rows)
}

/// A field of an API object as a cell: strings bare, null as `-`, the rest as JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.replace(['\n', '\t'], " "),
        other => other.to_string(),
    }
}

/// The `items` of a list answer.
pub fn items(body: &Value) -> Vec<Value> {
    body["items"].as_array().cloned().unwrap_or_default()
}

/// Prints `body` as asked: the table `draw` makes, or JSON/YAML of the answer.
pub fn show(body: &Value, format: Format, draw: impl Fn(&Value) -> String) -> Result<(), Failure> {
    match document(body, format)? {
        Some(text) => say(&text),
        None => say(&draw(body)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_under_their_headers() {
        let rows = vec![
            vec!["backup".to_owned(), "30 2 * * *".to_owned()],
            vec!["a".to_owned(), "@hourly".to_owned()],
        ];
        assert_eq!(
            table(&["NAME", "SCHEDULE"], &rows),
            "NAME    SCHEDULE\nbackup  30 2 * * *\na       @hourly"
        );
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(cell(&serde_json::json!("a\nb")), "a b");
    }
}
