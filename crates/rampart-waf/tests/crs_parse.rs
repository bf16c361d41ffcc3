//! Every directive of the OWASP Core Rule Set v4 (`../shared/crs`) and, when installed, of
//! Debian's `modsecurity-crs` (v3.3) parses, rule parts included, and every CRS v4 operator
//! compiles (regexes, phrase files, address lists).

use std::path::{Path, PathBuf};

use rampart_waf::{
    CompiledOperator, parse_actions, parse_operator, parse_variables, split_directives,
};

fn crs_v4() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs")
}

fn conf_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    files
}

/// Parses every file; returns (directives, rules) and panics with every problem found.
fn parse_all(files: &[PathBuf]) -> (usize, usize) {
    let mut problems = Vec::new();
    let (mut directives, mut rules) = (0, 0);
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let parsed = match split_directives(&text, &file.display().to_string()) {
            Ok(d) => d,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        directives += parsed.len();
        for d in parsed {
            let check =
                |r: Result<(), String>| r.map_err(|m| format!("{}: {} {m}", d.origin, d.name));
            let result = match d.name.as_str() {
                "SecRule" => {
                    rules += 1;
                    if d.args.len() < 2 || d.args.len() > 3 {
                        Err(format!(
                            "{}: SecRule with {} arguments",
                            d.origin,
                            d.args.len()
                        ))
                    } else {
                        let dir = file.parent().unwrap().to_path_buf();
                        let data = move |name: &str| {
                            std::fs::read_to_string(dir.join(name))
                                .map_err(|e| format!("{name}: {e}"))
                        };
                        check(parse_variables(&d.args[0]).map(|_| ()))
                            .and_then(|_| check(parse_operator(&d.args[1]).map(|_| ())))
                            .and_then(|_| {
                                let op = parse_operator(&d.args[1]).expect("parsed above");
                                check(CompiledOperator::compile(&op, &data).map(|_| ()))
                            })
                            .and_then(|_| match d.args.get(2) {
                                Some(a) => check(parse_actions(a).map(|_| ())),
                                None => Ok(()),
                            })
                    }
                }
                "SecAction" | "SecDefaultAction" => match d.args.first() {
                    Some(a) => check(parse_actions(a).map(|_| ())),
                    None => Err(format!("{}: {} without actions", d.origin, d.name)),
                },
                _ => Ok(()),
            };
            if let Err(e) = result {
                problems.push(e);
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    (directives, rules)
}

#[test]
fn crs_v4_parses() {
    let root = crs_v4();
    let mut files = conf_files(&root.join("rules"));
    files.push(root.join("crs-setup.conf.example"));
    let (directives, rules) = parse_all(&files);
    assert!(rules >= 690, "{rules} rules");
    assert!(directives >= rules, "{directives}");
}

#[test]
#[ignore = "needs Debian's modsecurity-crs package (scripts/test installs it)"]
fn debian_crs_v3_parses() {
    let root = Path::new("/usr/share/modsecurity-crs");
    let mut files = conf_files(&root.join("rules"));
    let setup = Path::new("/etc/modsecurity/crs/crs-setup.conf");
    if setup.exists() {
        files.push(setup.to_path_buf());
    }
    let (_, rules) = parse_all(&files);
    assert!(rules >= 500, "{rules} rules in Debian's CRS");
}
