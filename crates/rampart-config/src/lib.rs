//! Rampart's configuration.
//!
//! Loading is two-phase: the TOML text is deserialized into permissive raw structs
//! ([`raw`]), then [`validate`] checks every value, resolves references between sections and
//! builds an immutable [`Snapshot`]. Validation collects *all* problems, each with
//! `origin:line:column`, the field path and a message, so a rejected config can be fixed in one
//! pass. Unknown keys are errors. The only IO here is reading the config file and files it names
//! for secrets (the admin token, the sticky-cookie secret).

pub mod error;
pub mod firewall;
mod locate;
pub mod raw;
pub mod snapshot;
pub mod units;
mod validate;
pub mod waf;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors, FieldPath, Segment};
pub use snapshot::*;

/// Upper bound on a config file's size: configs are hand-written; anything larger is a mistake.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Reads and validates a config file.
pub fn load_file(path: &Path) -> Result<Snapshot, ConfigErrors> {
    let origin = path.display().to_string();
    let fail = |message: String| {
        ConfigErrors(vec![ConfigError {
            origin: origin.clone(),
            position: None,
            path: FieldPath::root(),
            message,
        }])
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read config: {e}")))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(fail(format!(
            "config is {} bytes, more than the {} byte limit",
            meta.len(),
            MAX_CONFIG_BYTES
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read config: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        fail(format!(
            "config is not valid UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    load_str(&text, &origin, base)
}

/// Validates config text. `origin` names the source in errors; relative file paths in the
/// config are resolved against `base_dir`.
pub fn load_str(text: &str, origin: &str, base_dir: &Path) -> Result<Snapshot, ConfigErrors> {
    validate::load(text, origin, base_dir)
}
