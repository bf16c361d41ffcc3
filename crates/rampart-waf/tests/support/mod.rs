//! Rule sources read from a directory, for the tests and benches (the crate itself does no IO).

use std::path::{Path, PathBuf};

/// Rule files from a directory, `Include` globs on the file name (`rules/*.conf`).
pub struct Dir(pub PathBuf);

impl rampart_waf::Sources for Dir {
    fn include(&self, pattern: &str, _from: &str) -> Result<Vec<(String, String)>, String> {
        let path = self.0.join(pattern);
        let dir = path.parent().ok_or("no directory")?.to_path_buf();
        let name = path
            .file_name()
            .ok_or("no file name")?
            .to_string_lossy()
            .into_owned();
        let (prefix, suffix) = name.split_once('*').unwrap_or((&name, ""));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                if name.contains('*') {
                    n.starts_with(prefix) && n.ends_with(suffix)
                } else {
                    n == name
                }
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                std::fs::read_to_string(&p)
                    .map(|t| (p.display().to_string(), t))
                    .map_err(|e| format!("{}: {e}", p.display()))
            })
            .collect()
    }

    fn data(&self, name: &str, from: &str) -> Result<String, String> {
        let dir = Path::new(from).parent().unwrap_or(&self.0);
        std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"))
    }
}

/// The CRS v4 beside the checkout (`../shared/crs`, as CI lays it out).
pub fn crs_v4() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs")
}
