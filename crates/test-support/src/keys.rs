//! Bus key files for tests, written the documented way: a new file renamed
//! over the old, as a secret manager does, so a reader never sees half a file.

use std::path::{Path, PathBuf};

/// Writes `text` (hex keys, one per line) to `dir/name`, atomically.
pub fn write_key_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text).expect("write key");
    std::fs::rename(&tmp, &path).expect("rename key");
    path
}
