//! The SecLang parser and rule compiler on arbitrary rule text: an error or a rule set,
//! never a panic or a hang. `Include` resolves to a second arbitrary file, data files to a
//! short phrase list.
#![no_main]

use libfuzzer_sys::fuzz_target;

struct Sources<'a>(&'a str);

impl rampart_waf::Sources for Sources<'_> {
    fn include(&self, pattern: &str, _from: &str) -> Result<Vec<(String, String)>, String> {
        if pattern.contains("loop") {
            return Err("no such file".into());
        }
        Ok(vec![("included.conf".into(), self.0.to_string())])
    }

    fn data(&self, name: &str, _from: &str) -> Result<String, String> {
        if name.ends_with(".data") {
            Ok("select\nunion all\n10.0.0.0/8\n".into())
        } else {
            Err(format!("{name}: no such file"))
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (main, included) = text.split_once('\u{0}').unwrap_or((&text, ""));
    let _ = rampart_waf::compile(main, "fuzz.conf", &Sources(included));
});
