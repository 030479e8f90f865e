//! The launch template's user data: stored gzip'd (EC2's 16 KiB limit), shown in plans by its
//! digest (never its text), and the bootstrap values it carries. Part of the launch template's
//! kind ([`crate::launch_template`]).

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A user-data script as a plan shows it: its digest and size, not its text.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Digested(String);

pub(crate) fn digest(text: &str) -> Digested {
    let hash = Sha256::digest(text.as_bytes());
    let hex: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    Digested(format!("sha256:{hex}… ({} bytes)", text.len()))
}

/// User data as EC2 stores it: gzip (cloud-init unpacks it), so that the bootstrap and its
/// scripts fit EC2's 16 KiB limit. Deterministic (no timestamp), so equal text, equal bytes.
pub fn encode_user_data(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(text.as_bytes());
    gz.finish().unwrap_or_default()
}

/// The text of stored user data, gzip or plain (a template written by hand).
pub fn decode_user_data(bytes: &[u8]) -> String {
    use std::io::Read;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .is_ok()
        {
            return text;
        }
    }
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `readonly NAME='value'` lines of a rendered bootstrap, unquoted.
pub fn bootstrap_values(user_data: &str) -> BTreeMap<String, String> {
    user_data
        .lines()
        .filter_map(|l| l.strip_prefix("readonly "))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, v)| {
            k.chars().all(|c| c.is_ascii_uppercase() || c == '_') && v.starts_with('\'')
        })
        .map(|(k, v)| {
            let inner = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            (k.to_string(), inner.replace("'\\''", "'"))
        })
        .collect()
}
