//! Files a command reads: a path, or `-` for standard input.

use std::io::Read as _;

use crate::client::Failure;

/// A file's text, or stdin's for `-`.
pub fn read_source(path: &str) -> Result<String, Failure> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::Usage(format!("stdin: {e}")))?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|e| Failure::Usage(format!("{path}: {e}")))
}
